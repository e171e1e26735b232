"""The :class:`Pipe`: create, open, close and unlink a shared-memory ring pipe."""

from __future__ import annotations

import errno
import os
import re
import time
import weakref
from types import TracebackType
from typing import Any, Literal

from pykernel._core import ffi, lib
from pykernel._errors import ClosedError, GeometryError, PipeNameError, SegmentError
from pykernel._pipe_errno import attach_error, segment_error
from pykernel._pipe_reader import Reader
from pykernel._pipe_stats import PipeStats, read_stats
from pykernel._pipe_writer import Writer

Shape = Literal["one", "multiplexer", "combiner"]

SHM_DIR = "/dev/shm"
SHM_PREFIX = "pykernel."
_NAME = re.compile(r"[A-Za-z0-9_.-]{1," + str(lib.PK_NAME_MAX) + "}")
_SHAPES: dict[str, int] = {
    "one": lib.PK_SHAPE_ONE,
    "multiplexer": lib.PK_SHAPE_MULTIPLEXER,
    "combiner": lib.PK_SHAPE_COMBINER,
}
SHAPE_NAMES: dict[int, str] = {v: k for k, v in _SHAPES.items()}
_U64 = 1 << 64
_CREATING_GRACE = 0.5  # seconds open() waits for a segment that is still being initialised


def shm_name(name: str) -> bytes:
    """Return the POSIX shared-memory name of pipe ``name`` (``/pykernel.<name>``).

    Raises:
        PipeNameError: ``name`` is not 1..200 characters of ``[A-Za-z0-9_.-]``.

    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise PipeNameError(
            f"bad pipe name {name!r}: use 1..{lib.PK_NAME_MAX} characters of [A-Za-z0-9_.-]"
        )
    return ("/" + SHM_PREFIX + name).encode()


def _int_arg(what: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise GeometryError(f"{what} must be an integer in {low}..{high}, got {value!r}")
    return value


def geometry(
    slot_size: int,
    slots: int,
    shape: str,
    lossy: bool,
    max_readers: int,
    max_writers: int,
    initial_sequence: int = 0,
) -> object:
    """Validate a pipe geometry in Python and return it as a ``pk_geometry`` cdata.

    Raises:
        GeometryError: naming the first bad field and its value.

    """
    _int_arg("slot_size", slot_size, 1, lib.PK_MAX_SLOT_SIZE)
    _int_arg("slots", slots, 2, lib.PK_MAX_SLOTS)
    if slots & (slots - 1):
        raise GeometryError(f"slots must be a power of two, got {slots}")
    if shape not in _SHAPES:
        raise GeometryError(f"shape must be one of {sorted(_SHAPES)}, got {shape!r}")
    if not isinstance(lossy, bool):
        raise GeometryError(f"lossy must be True or False, got {lossy!r}")
    readers = _int_arg("max_readers", max_readers, 1, lib.PK_MAX_PEERS)
    writers = _int_arg("max_writers", max_writers, 1, lib.PK_MAX_PEERS)
    _int_arg("initial_sequence", initial_sequence, 0, _U64 - 1)
    g = ffi.new("pk_geometry *")
    g.slot_size = slot_size
    g.slots = slots
    g.shape = _SHAPES[shape]
    g.flags = lib.PK_FLAG_LOSSY if lossy else 0
    g.max_readers = readers if shape == "multiplexer" else 1
    g.max_writers = writers if shape == "combiner" else 1
    g.start_pos = initial_sequence
    return g


class Pipe:
    """One shared-memory ring pipe, mapped into this process.

    Make one with :meth:`create` or :meth:`open`; attach ends with :meth:`writer` and
    :meth:`reader`. Closing the pipe closes every end made from it. A pipe and its ends
    are used by one thread at a time.

    Attributes:
        name: the pipe's name (without the ``pykernel.`` prefix).
        slot_size: the largest message, in bytes.
        slots: the ring length (a power of two).
        shape: ``"one"``, ``"multiplexer"`` (fan-out) or ``"combiner"`` (fan-in).
        lossy: whether writers overwrite unread messages instead of waiting.
        max_readers: reader places (1 unless multiplexer).
        max_writers: writer places (1 unless combiner).

    """

    def __init__(self, name: str, handle: object) -> None:
        """Wrap a mapped ``pk_pipe *``; use :meth:`create` or :meth:`open` instead."""
        self.name = name
        self._h = handle
        info = ffi.new("pk_pipe_info *")
        lib.pk_pipe_info_get(handle, info)
        g = info.geometry
        self.slot_size: int = g.slot_size
        self.slots: int = g.slots
        self.shape: str = SHAPE_NAMES[g.shape]
        self.lossy: bool = bool(g.flags & lib.PK_FLAG_LOSSY)
        self.max_readers: int = g.max_readers
        self.max_writers: int = g.max_writers
        self.size_bytes: int = info.total_bytes
        self.creator_pid: int = info.creator_pid
        self._ends: weakref.WeakSet[Writer | Reader] = weakref.WeakSet()

    @classmethod
    def create(
        cls,
        name: str,
        slot_size: int = 4096,
        slots: int = 256,
        shape: Shape = "one",
        lossy: bool = False,
        max_readers: int = 32,
        max_writers: int = 32,
        mode: int = 0o600,
        exist_ok: bool = False,
        *,
        initial_sequence: int = 0,
    ) -> Pipe:
        """Create the pipe ``name`` (``/dev/shm/pykernel.<name>``) and map it.

        Args:
            name: 1..200 characters of ``[A-Za-z0-9_.-]``.
            slot_size: the largest message in bytes.
            slots: ring length, a power of two (at least 2).
            shape: ``"one"`` (1:1), ``"multiplexer"`` (1 writer, many readers) or
                ``"combiner"`` (many writers, 1 reader).
            lossy: writers overwrite unread messages; readers count what they missed.
            max_readers: reader places of a multiplexer (ignored otherwise).
            max_writers: writer places of a combiner (ignored otherwise).
            mode: permission bits of the segment (owner-only by default).
            exist_ok: open an existing pipe of the same geometry instead of failing.
            initial_sequence: first 64-bit sequence number (tests start near 2**64).

        Raises:
            GeometryError: a bad size/shape, or ``exist_ok`` found a different geometry.
            PipeNameError: a bad name.
            PipeExistsError: the pipe exists and ``exist_ok`` is false.
            SegmentError: no room in /dev/shm, or no permission.

        """
        path = shm_name(name)
        g = geometry(slot_size, slots, shape, lossy, max_readers, max_writers, initial_sequence)
        if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o777:
            raise GeometryError(f"mode must be permission bits in 0..0o777, got {mode!r}")
        size = lib.pk_segment_size(g)
        if size == 0:
            raise GeometryError(
                f"pipe {name!r}: {slots} slots of {slot_size} bytes exceed the address space"
            )
        _check_room(name, size)
        out = ffi.new("pk_pipe **")
        rc = lib.pk_pipe_create(path, g, mode, out)
        if rc == 0:
            return cls(name, out[0])
        err = segment_error(rc, name)
        if exist_ok and isinstance(err, FileExistsError):
            pipe = cls.open(name)
            want = (slot_size, slots, shape, lossy, g.max_readers, g.max_writers)
            have = (
                pipe.slot_size,
                pipe.slots,
                pipe.shape,
                pipe.lossy,
                pipe.max_readers,
                pipe.max_writers,
            )
            if want != have:
                pipe.close()
                raise GeometryError(
                    f"pipe {name!r} exists with geometry {have} "
                    f"(slot_size, slots, shape, lossy, max_readers, max_writers), not {want}"
                )
            return pipe
        raise err

    @classmethod
    def open(cls, name: str, *, prefault: bool = True) -> Pipe:
        """Map the existing pipe ``name``; its geometry is read from the header.

        Args:
            name: the pipe's name.
            prefault: map every page now (default), so the hot path never page-faults;
                False for a quick look at the header and counters of a large pipe.

        Raises:
            PipeNotFoundError: no such pipe.
            SegmentError: not a pykernel pipe, another ABI version, or no permission.
            GeometryError: the header does not match the segment's size.

        """
        path = shm_name(name)
        out = ffi.new("pk_pipe **")
        flags = 0 if prefault else lib.PK_OPEN_LAZY
        rc = lib.pk_pipe_open_ex(path, flags, out)
        deadline = time.monotonic() + _CREATING_GRACE
        while rc == -errno.EAGAIN and time.monotonic() < deadline:
            time.sleep(0.002)  # a creator is between shm_open and its header: let it finish
            rc = lib.pk_pipe_open_ex(path, flags, out)
        if rc != 0:
            raise segment_error(rc, name)
        return cls(name, out[0])

    @staticmethod
    def unlink(name: str) -> None:
        """Remove pipe ``name`` from /dev/shm; processes that mapped it keep their mapping.

        Raises:
            PipeNotFoundError: no such pipe.

        """
        rc = lib.pk_pipe_unlink(shm_name(name))
        if rc != 0:
            raise segment_error(rc, name)

    def _handle(self) -> object:
        if self._h is None:
            raise ClosedError(f"pipe {self.name!r} is closed")
        return self._h

    def writer(self) -> Writer:
        """Attach a writer (the one writer, or one of a combiner's writers).

        Raises:
            PipeBusyError: the writer place(s) are held by live processes.
            ClosedError: the pipe was closed.

        """
        return self._attach(Writer, "pk_writer **", lib.pk_writer_attach, reading=False)

    def reader(self) -> Reader:
        """Attach a reader.

        A multiplexer's late reader starts at the head; the one reader of a 1:1 pipe or a
        combiner continues where the previous one stopped.

        Raises:
            PipeBusyError: the reader place(s) are held by live processes.
            ClosedError: the pipe was closed.

        """
        return self._attach(Reader, "pk_reader **", lib.pk_reader_attach, reading=True)

    def _attach(self, end: Any, ctype: str, attach: Any, *, reading: bool) -> Any:
        """Attach one end in C and keep it, so closing the pipe closes it too."""
        out = ffi.new(ctype)
        rc = attach(self._handle(), out)
        if rc != 0:
            raise attach_error(rc, name=self.name, reading=reading)
        made = end(self, out[0])
        self._ends.add(made)
        return made

    def stats(self) -> PipeStats:
        """Return a cheap snapshot of the counters (safe from any process, never blocks)."""
        return read_stats(self.name, self._handle(), self.slots, self.max_readers, self.max_writers)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._h is None

    def close(self) -> None:
        """Detach every end made from this pipe and unmap it (idempotent)."""
        if self._h is None:
            return
        for end in list(self._ends):
            end.close()
        lib.pk_pipe_close(self._h)
        self._h = None

    def __enter__(self) -> Pipe:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_h", None) is not None:
            self.close()

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        """Pickle by name: the receiving process (e.g. a spawned child) maps it anew."""
        return (Pipe.open, (self.name,))

    def __repr__(self) -> str:
        state = "closed" if self._h is None else f"{self.slots}x{self.slot_size}B"
        lossy = " lossy" if self.lossy else ""
        return f"<Pipe {self.name!r} {self.shape}{lossy} {state}>"


def _check_room(name: str, size: int) -> None:
    """Fail early and clearly when /dev/shm cannot hold ``size`` more bytes."""
    try:
        st = os.statvfs(SHM_DIR)
    except OSError:
        return  # no /dev/shm to ask: posix_fallocate in the core still catches it
    free = st.f_bavail * st.f_frsize
    if size > free:
        raise SegmentError(
            f"pipe {name!r} needs {size} bytes but {SHM_DIR} has {free} free "
            "(in a container, raise --shm-size)"
        )
