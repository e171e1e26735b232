"""The receiving end of a pipe: :class:`Reader` (copying, batch, packed and zero-copy reads)."""

from __future__ import annotations

import errno
import struct
from itertools import chain
from typing import TYPE_CHECKING, Any

from pykernel._core import ffi, lib
from pykernel._errors import MessageSizeError, PipeArgumentError
from pykernel._fastcall import recv as _try_recv
from pykernel._fastcall import view as _try_view
from pykernel._pipe_ends import (
    _BATCH_BYTES,
    _ETIMEDOUT,
    _FAST_MAX,
    _SLICE,
    _again,
    _End,
    _from_buffer,
    _wait_ns,
    timeout_ns,
)
from pykernel._pipe_errno import transfer_error
from pykernel._pipe_zero import View

if TYPE_CHECKING:
    from pykernel._pipe import Pipe

_recv = lib.pk_recv
_recv_len = lib.pk_recv_len
_recv_batch = lib.pk_recv_batch
_view = lib.pk_view
_release = lib.pk_release
_unpack = ffi.unpack
_buffer = ffi.buffer

_CHUNK = 64  # messages per struct unpack when splitting equal-sized messages
_chunkers: dict[int, struct.Struct] = {}


def _split_even(data: bytes, size: int, count: int) -> list[bytes]:
    """Split ``data`` into ``count`` messages of ``size`` bytes at C speed.

    A cached Struct of 64 fields unpacks 64 messages per call; the rest is sliced.
    """
    whole = count - count % _CHUNK
    out: list[bytes] = []
    if whole:
        st = _chunkers.get(size)
        if st is None:
            if len(_chunkers) > 64:
                _chunkers.clear()
            st = _chunkers[size] = struct.Struct(f"{size}s" * _CHUNK)
        out = list(chain.from_iterable(st.iter_unpack(memoryview(data)[: whole * size])))
    out.extend(data[i : i + size] for i in range(whole * size, count * size, size))
    return out


class Reader(_End):
    """The receiving end of a pipe (:meth:`Pipe.reader`)."""

    _kind = "reader"

    def __init__(self, pipe: Pipe, handle: Any) -> None:
        super().__init__(pipe, handle)
        self._cap = pipe.slot_size
        self._buf = ffi.new("char[]", pipe.slot_size)
        self._bufv = _buffer(self._buf)  # slicing it makes the bytes (cheaper than unpack)
        self._bufi = int(ffi.cast("uintptr_t", self._buf))
        self._fcap = min(self._cap, _FAST_MAX)
        # Big lossless slots: recv copies a large message once, straight from its slot (a
        # lossless slot is not overwritten before release); lossy ones need pk_recv's seqlock.
        self._one_copy = not pipe.lossy and pipe.slot_size > _FAST_MAX
        self._lenp = ffi.new("uint32_t *")
        self._ptr = ffi.new("const void **")
        self._view: View | None = None
        self._bbuf: Any = None
        self._blens: Any = None
        self._bcap = 0

    def _set_spin(self, handle: Any, ns: int) -> None:
        lib.pk_reader_set_spin(handle, ns)

    @property
    def late_wakeups(self) -> int:
        """Sleeps that ran out their time although a message was there (lost wake-ups: 0)."""
        return int(lib.pk_reader_late_wakeups(self._live()))

    @property
    def index(self) -> int:
        """Record number of this reader (its row in :attr:`PipeStats.readers`)."""
        return int(lib.pk_reader_index(self._live()))

    @property
    def dropped(self) -> int:
        """Lossy mode: messages this reader's record missed (overwritten before read)."""
        return int(lib.pk_reader_drops(self._live()))

    def recv(self, timeout: float | None = None) -> bytes:
        """Receive the next message as bytes, waiting up to ``timeout`` s.

        Raises:
            PipeTimeout: nothing arrived within ``timeout``.
            WriterGoneError: the pipe is empty and no writer is left.
            ClosedError: this reader is closed.

        """
        t = _SLICE if timeout is None else timeout_ns(timeout)  # a bad timeout fails first
        got = _try_recv(self._hi, self._bufi, self._fcap)
        if type(got) is bytes:
            return got
        if self._one_copy:
            return self._recv_from_slot(t, timeout)
        n = _recv_len(self._h, self._buf, self._cap, t)
        if n >= 0:  # the length itself: no out-parameter to read back
            return self._bufv[:n]
        return self._recv_slow(0 if n == _ETIMEDOUT else n, timeout)

    def _recv_slow(self, rc: int, timeout: float | None) -> bytes:
        """Finish a recv that did not succeed at once: retry, or raise what went wrong."""
        rc = _again(_recv, (self._h, self._buf, self._cap, self._lenp), timeout, rc)
        if rc == 1:
            return _unpack(self._buf, self._lenp[0])
        raise transfer_error(rc, name=self._name, reading=True, timeout=timeout)

    def _recv_from_slot(self, t: int, timeout: float | None) -> bytes:
        """Receive through a view: one copy from the slot into the new bytes, then release.

        For large messages: the copying path makes two (into this reader's buffer, then
        into bytes). The wait happens in C with the GIL released, as for every recv.
        """
        raw = self._view_full(t, timeout)
        try:
            return raw[:]
        finally:
            _release(self._h)

    def _view_full(self, t: int, timeout: float | None) -> Any:
        """Open a view through the full call (waiting with the GIL released); its bytes.

        Raises what the wait ended with (timeout, writer gone, closed, a view open).
        """
        h, ptr, lenp = self._h, self._ptr, self._lenp
        rc = _view(h, ptr, lenp, t)
        if rc != 1:
            rc = _again(_view, (h, ptr, lenp), timeout, rc)
            if rc != 1:
                raise transfer_error(rc, name=self._name, reading=True, timeout=timeout)
        return _buffer(ptr[0], lenp[0])

    def recv_nowait(self) -> bytes:
        """Receive the next message or raise :class:`PipeEmpty` at once."""
        return self.recv(0)

    def recv_into(self, buffer: Any, timeout: float | None = None) -> int:
        """Copy the next message into the writable ``buffer``; return its length.

        Raises:
            MessageSizeError: ``buffer`` is smaller than the message (which stays queued).

        """
        try:
            target = _from_buffer("char[]", buffer, require_writable=True)
        except (TypeError, BufferError):
            raise PipeArgumentError(
                f"recv_into needs a writable buffer, got {type(buffer).__name__}"
            ) from None
        rc = _recv(self._h, target, len(target), self._lenp, _wait_ns(timeout))
        if rc != 1:
            rc = _again(_recv, (self._h, target, len(target), self._lenp), timeout, rc)
        if rc == 1:
            return int(self._lenp[0])
        if rc == -errno.EMSGSIZE:  # the message stays queued
            raise MessageSizeError(
                f"pipe {self._name!r}: buffer of {len(target)} bytes is smaller than the "
                "next message"
            )
        raise transfer_error(rc, name=self._name, reading=True, timeout=timeout)

    def recv_batch(self, max_messages: int = 1024, timeout: float | None = None) -> list[bytes]:
        """Receive up to ``max_messages`` in one C call: at least one unless ``timeout``.

        Raises:
            PipeTimeout: nothing arrived within ``timeout``.
            WriterGoneError: the pipe is empty and no writer is left.

        """
        if (
            isinstance(max_messages, bool)
            or not isinstance(max_messages, int)
            or (max_messages < 1)
        ):
            raise PipeArgumentError(f"max_messages must be >= 1, got {max_messages!r}")
        if max_messages > self._bcap:
            self._grow_batch(max_messages)
        rc = _recv_batch(
            self._h,
            self._bbuf,
            self._bbytes,
            self._blens,
            max_messages,
            _SLICE if timeout is None else timeout_ns(timeout),
        )
        if rc <= 0:
            args = (self._h, self._bbuf, self._bbytes, self._blens, max_messages)
            rc = _again(_recv_batch, args, timeout, rc)
        if rc <= 0:
            raise transfer_error(rc, name=self._name, reading=True, timeout=timeout)
        lens = _unpack(self._blens, rc)
        first = lens[0]
        if first and lens.count(first) == rc:
            return _split_even(_unpack(self._bbuf, first * rc), first, rc)
        data = _unpack(self._bbuf, sum(lens))
        out = []
        off = 0
        for n in lens:
            end = off + n
            out.append(data[off:end])
            off = end
        return out

    def recv_packed(self, buffer: Any, lengths: Any, timeout: float | None = None) -> int:
        """Copy up to ``len(lengths)`` messages end to end into ``buffer``; return how many.

        One C call and no Python object per message. ``lengths`` is a writable buffer of
        uint32 (e.g. ``numpy.empty(n, numpy.uint32)``) that receives each message's size;
        ``buffer`` must hold at least one message. At least one message unless ``timeout``.

        Raises:
            PipeArgumentError: ``buffer`` or ``lengths`` is not a writable buffer.
            MessageSizeError: ``buffer`` is smaller than the next message.
            PipeTimeout: nothing arrived within ``timeout``.
            WriterGoneError: the pipe is empty and no writer is left.

        """
        try:
            target = _from_buffer("char[]", buffer, require_writable=True)
            lens = _from_buffer("uint32_t[]", lengths, require_writable=True)
        except (TypeError, BufferError):
            raise PipeArgumentError(
                "recv_packed needs a writable byte buffer and a writable uint32 buffer"
            ) from None
        n = len(lens)
        if n == 0:
            raise PipeArgumentError("recv_packed needs room for at least one length")
        args = (self._h, target, len(target), lens, n)
        rc = _recv_batch(*args, _wait_ns(timeout))
        if rc <= 0:
            rc = _again(_recv_batch, args, timeout, rc)
        if rc > 0:
            return rc
        if rc == -errno.EMSGSIZE:
            raise MessageSizeError(
                f"pipe {self._name!r}: buffer of {len(target)} bytes is smaller than the "
                "next message"
            )
        raise transfer_error(rc, name=self._name, reading=True, timeout=timeout)

    def _grow_batch(self, n: int) -> None:
        self._bcap = n
        self._bbytes = max(self._cap, min(n * self._cap, _BATCH_BYTES))
        self._bbuf = ffi.new("char[]", self._bbytes)
        self._blens = ffi.new("uint32_t[]", n)

    def view(self, timeout: float | None = None) -> View:
        """Return a zero-copy read-only view of the next message; release it (or use ``with``).

        Raises:
            PipeTimeout: nothing arrived within ``timeout``.
            WriterGoneError: the pipe is empty and no writer is left.

        """
        if self._view is not None:
            raise PipeArgumentError(f"pipe {self._name!r}: a view is still open")
        t = _wait_ns(timeout)  # a bad timeout fails first
        mv = _try_view(self._hi)  # GIL held, when a message is there now
        if type(mv) is not memoryview:
            mv = memoryview(self._view_full(t, timeout)).toreadonly()
        self._view = View(self, mv)
        return self._view

    def _drop_open(self) -> None:
        if self._view is not None:  # not consumed: the message stays for the next reader
            self._view._forget()
            self._view = None

    def _detach(self, handle: Any) -> None:
        lib.pk_reader_detach(handle)
