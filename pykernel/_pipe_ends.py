"""The two ends of a pipe: :class:`Writer` and :class:`Reader`, plus zero-copy handles.

The hot calls are thin. ``send`` and ``recv`` first try the GIL-held fast path
(``pykernel._fastcall``: done at once when room or a message is there, ~0.1 us a pair);
whatever must wait or fail makes the full cffi call, which releases the GIL, waits inside C,
counts and raises. No per-call allocation; lib functions are bound once at import.
"""

from __future__ import annotations

import errno
import math
import struct
from collections.abc import Sequence
from itertools import chain
from types import TracebackType
from typing import TYPE_CHECKING, Any

from pykernel._core import ffi, lib
from pykernel._errors import ClosedError, MessageSizeError, PipeArgumentError
from pykernel._fastcall import bind as _bind_fast
from pykernel._fastcall import recv as _try_recv
from pykernel._fastcall import send as _try_send
from pykernel._pipe_errno import transfer_error
from pykernel._pipe_zero import Slot, View

if TYPE_CHECKING:
    from pykernel._pipe import Pipe

_send = lib.pk_send
_send_batch = lib.pk_send_batch
_send_strided = lib.pk_send_strided
_recv = lib.pk_recv
_recv_len = lib.pk_recv_len
_recv_batch = lib.pk_recv_batch
_view = lib.pk_view
_release = lib.pk_release
_unpack = ffi.unpack
_buffer = ffi.buffer
_from_buffer = ffi.from_buffer
_NULL = ffi.NULL
_bind_fast(
    int(ffi.cast("uintptr_t", ffi.addressof(lib, "pk_send_try"))),
    int(ffi.cast("uintptr_t", ffi.addressof(lib, "pk_recv_try"))),
)
_FAST_MAX = 64 * 1024  # the fast path's largest message (fastcall.c: FAST_MAX)
_BATCH_BYTES = 1 << 22  # recv_batch copies at most this much per call (at least one slot)
_EINTR = -errno.EINTR
_EMSGSIZE = -errno.EMSGSIZE
_ETIMEDOUT = -errno.ETIMEDOUT
# timeout=None waits in slices, and a signal interrupts a sleep with -EINTR, so that Python
# signal handlers (Ctrl-C) run between C calls; the wait then simply goes on.
_SLICE = 250_000_000


def _wait_ns(timeout: float | None) -> int:
    return _SLICE if timeout is None else timeout_ns(timeout)


def _again(fn: Any, args: tuple[Any, ...], timeout: float | None, rc: int) -> int:
    """Repeat a blocking call cut short by a signal or by the end of an endless wait's slice.

    The loop's backward jump is where the interpreter runs pending signal handlers, so a
    KeyboardInterrupt leaves from here.
    """
    t = _wait_ns(timeout)
    while rc == _EINTR or (rc == 0 and timeout is None):
        rc = fn(*args, t)
    return rc


def timeout_ns(timeout: float | None) -> int:
    """Convert a timeout in seconds (None = forever) to the core's nanoseconds (-1 = forever).

    Raises:
        PipeArgumentError: a negative, NaN or non-numeric timeout.

    """
    if timeout is None:
        return -1
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not (timeout >= 0 and not math.isnan(timeout))
    ):
        raise PipeArgumentError(f"timeout must be None or seconds >= 0, got {timeout!r}")
    if math.isinf(timeout):
        return -1
    return min(int(timeout * 1e9), (1 << 62))


def _as_char(data: Any) -> Any:
    """Return a ``char[]`` view of any buffer-protocol object (bytes are passed as they are)."""
    try:
        return _from_buffer("char[]", data)
    except TypeError:
        raise PipeArgumentError(
            f"a message must be bytes-like, got {type(data).__name__}"
        ) from None


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


class _End:
    """What writers and readers share: the pipe, closing, context management."""

    _kind = "end"

    def __init__(self, pipe: Pipe, handle: Any) -> None:
        self.pipe = pipe
        self._h = handle
        self._hi = int(ffi.cast("uintptr_t", handle))  # the fast path's handle; 0 = closed
        self._name = pipe.name
        self._spin_us = 50.0

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (or the pipe was closed)."""
        return self._h is _NULL

    @property
    def spin_us(self) -> float:
        """How long a blocking call spins before it sleeps on the futex (default 50 µs).

        Spinning buys latency with CPU; on a machine with few cores keep it short.
        """
        return self._spin_us

    @spin_us.setter
    def spin_us(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not (0 <= value <= 1e6):
            raise PipeArgumentError(f"spin_us must be in 0..1e6, got {value!r}")
        self._spin_us = float(value)
        self._set_spin(self._live(), int(value * 1000))

    def _live(self) -> Any:
        if self._h is _NULL:
            raise ClosedError(f"pipe {self._name!r}: this {self._kind} is closed")
        return self._h

    def _set_spin(self, handle: Any, ns: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Detach from the pipe (idempotent)."""
        raise NotImplementedError

    def __reduce__(self) -> Any:
        raise TypeError(
            f"a pipe {self._kind} belongs to the process that attached it; pass the Pipe "
            f"(it pickles by name) and attach a {self._kind} in the other process"
        )

    def __enter__(self) -> Any:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # A forgotten end must not hold its place (a multiplexer writer would wait on it).
        if getattr(self, "_h", _NULL) is not _NULL:
            self.close()


class Writer(_End):
    """The sending end of a pipe (:meth:`Pipe.writer`)."""

    _kind = "writer"

    def __init__(self, pipe: Pipe, handle: Any) -> None:
        super().__init__(pipe, handle)
        self._max = pipe.slot_size
        self._ptr = ffi.new("void **")
        self._slot: Slot | None = None

    @property
    def index(self) -> int:
        """Record number of this writer (its row in :attr:`PipeStats.writers`)."""
        return int(lib.pk_writer_index(self._live()))

    def _set_spin(self, handle: Any, ns: int) -> None:
        lib.pk_writer_set_spin(handle, ns)

    @property
    def late_wakeups(self) -> int:
        """Sleeps that ran out their time although room was there (lost wake-ups: 0)."""
        return int(lib.pk_writer_late_wakeups(self._live()))

    def send(self, data: Any, timeout: float | None = None) -> None:
        """Send one message (a copy of ``data``), waiting up to ``timeout`` s for room.

        Raises:
            MessageSizeError: ``data`` is larger than the slot size.
            PipeTimeout: no room within ``timeout``.
            ReaderGoneError: the pipe is full and its reader is gone.
            ClosedError: this writer is closed.

        """
        t = _SLICE if timeout is None else timeout_ns(timeout)  # a bad timeout fails first
        if _try_send(self._hi, data) == 1:
            return
        if type(data) is not bytes:
            data = _as_char(data)
        # The size is checked in C (-EMSGSIZE): one comparison less per message here.
        try:
            rc = _send(self._h, data, len(data), t)
        except OverflowError:  # 4 GiB or more does not fit the uint32_t length
            rc = _EMSGSIZE
        if rc != 1:
            self._send_slow(data, rc, timeout)

    def _send_slow(self, data: Any, rc: int, timeout: float | None) -> None:
        """Finish a send that did not succeed at once: retry, or raise what went wrong."""
        n = len(data)
        if rc == _EMSGSIZE and self._h is not _NULL:
            raise MessageSizeError(
                f"pipe {self._name!r}: message of {n} bytes exceeds slot size {self._max}"
            )
        rc = _again(_send, (self._h, data, n), timeout, rc)
        if rc != 1:
            raise transfer_error(rc, name=self._name, reading=False, timeout=timeout)

    def send_nowait(self, data: Any) -> None:
        """Send one message or raise :class:`PipeFull` at once."""
        self.send(data, 0)

    def send_batch(self, messages: Sequence[Any], timeout: float | None = None) -> int:
        """Send many messages in one C call; returns how many were sent.

        All are sent unless ``timeout`` expires first (then the count sent so far).

        Raises:
            MessageSizeError: a message is larger than the slot size (nothing is sent).
            PipeTimeout: not even one message could be sent within ``timeout``.

        """
        count = len(messages)
        if count == 0:
            return 0
        try:
            blob = b"".join(messages)
        except TypeError:
            raise PipeArgumentError("send_batch needs a sequence of bytes-like messages") from None
        lens = list(map(len, messages))
        if sum(lens) != len(blob):  # not all flat byte buffers (e.g. numpy): count bytes
            lens = [memoryview(m).nbytes for m in messages]
        t = _wait_ns(timeout)
        first = lens[0]
        even = lens.count(first) == count and first <= self._max
        if not even and max(lens) > self._max:
            i = next(i for i, n in enumerate(lens) if n > self._max)
            raise MessageSizeError(
                f"pipe {self._name!r}: message {i} of {lens[i]} bytes exceeds slot size {self._max}"
            )
        # All the same size (the common case): no per-message length array.
        lens_c = None if even else ffi.new("uint32_t[]", lens)
        if even:
            rc = _send_strided(self._h, blob, first, first, count, t)
        else:
            rc = _send_batch(self._h, blob, lens_c, count, t)
        if rc == count:
            return rc
        return self._batch_rest(blob, lens, lens_c, rc, timeout)

    def _batch_rest(
        self, blob: bytes, lens: list[int], lens_c: Any, rc: int, timeout: float | None
    ) -> int:
        """Slow path of send_batch: go on after a partial send, a slice end or a signal."""
        count, sent = len(lens), 0
        base = _from_buffer("char[]", blob)
        t = _wait_ns(timeout)
        while True:
            if rc > 0:
                sent += rc
                if sent == count or timeout is not None:
                    return sent
            elif not (rc == _EINTR or (rc == 0 and timeout is None)):
                if sent:
                    return sent
                raise transfer_error(rc, name=self._name, reading=False, timeout=timeout)
            if lens_c is None:
                rc = _send_strided(
                    self._h, base + sent * lens[0], lens[0], lens[0], count - sent, t
                )
            else:
                rc = _send_batch(self._h, base + sum(lens[:sent]), lens_c + sent, count - sent, t)

    def send_packed(self, data: Any, size: int, timeout: float | None = None) -> int:
        """Send ``len(data) // size`` messages of ``size`` bytes laid end to end in ``data``.

        One C call and no Python object per message: the fastest way to move many small
        fixed-size messages (e.g. the rows of a 2-D numpy array). Returns how many were sent:
        all unless ``timeout`` expires first.

        Raises:
            MessageSizeError: ``size`` is larger than the slot size.
            PipeArgumentError: ``data`` is not a buffer of a whole number of messages.
            PipeTimeout: not even one message could be sent within ``timeout``.

        """
        if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= self._max:
            raise MessageSizeError(
                f"pipe {self._name!r}: packed message size {size!r}, slot size is {self._max}"
            )
        buf = data if type(data) is bytes else _as_char(data)
        total = len(buf)
        if total % size:
            raise PipeArgumentError(
                f"pipe {self._name!r}: {total} bytes are not a whole number of {size}-byte messages"
            )
        count = total // size
        if count == 0:
            return 0
        rc = _send_strided(self._h, buf, size, size, count, _wait_ns(timeout))
        if rc == count:
            return rc
        return self._batch_rest(buf, [size] * count, None, rc, timeout)

    def reserve(self, nbytes: int | None = None, timeout: float | None = None) -> Slot:
        """Reserve the next slot for zero-copy writing; commit it (or use ``with``).

        Args:
            nbytes: the message length to publish (default: the slot size).
            timeout: seconds to wait for room (None = forever, 0 = not at all).

        Raises:
            MessageSizeError: ``nbytes`` exceeds the slot size.
            PipeTimeout / PipeFull: no room.

        """
        n = self._max if nbytes is None else nbytes
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= self._max:
            raise MessageSizeError(
                f"pipe {self._name!r}: reserve of {n!r} bytes, slot size is {self._max}"
            )
        if self._slot is not None:
            raise PipeArgumentError(f"pipe {self._name!r}: a reserved slot is still open")
        rc = lib.pk_reserve(self._h, self._ptr, _wait_ns(timeout))
        if rc != 1:
            rc = _again(lib.pk_reserve, (self._h, self._ptr), timeout, rc)
        if rc != 1:
            raise transfer_error(rc, name=self._name, reading=False, timeout=timeout)
        self._slot = Slot(self, self._ptr[0], n)
        return self._slot

    def _abort(self) -> None:
        if self._h is not _NULL:
            lib.pk_abort(self._h)

    def close(self) -> None:
        """Detach this writer (an open reserved slot is aborted). Idempotent."""
        if self._h is _NULL:
            return
        self._slot = None
        h, self._h, self._hi = self._h, _NULL, 0
        lib.pk_writer_detach(h)

    def __repr__(self) -> str:
        return f"<Writer of {self._name!r}{' closed' if self.closed else ''}>"


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
        h, ptr, lenp = self._h, self._ptr, self._lenp
        rc = _view(h, ptr, lenp, t)
        if rc != 1:
            rc = _again(_view, (h, ptr, lenp), timeout, rc)
            if rc != 1:
                raise transfer_error(rc, name=self._name, reading=True, timeout=timeout)
        try:
            return _buffer(ptr[0], lenp[0])[:]
        finally:
            _release(h)

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
        rc = lib.pk_view(self._h, self._ptr, self._lenp, _wait_ns(timeout))
        if rc != 1:
            rc = _again(lib.pk_view, (self._h, self._ptr, self._lenp), timeout, rc)
        if rc != 1:
            raise transfer_error(rc, name=self._name, reading=True, timeout=timeout)
        self._view = View(self, self._ptr[0], int(self._lenp[0]))
        return self._view

    def close(self) -> None:
        """Detach this reader (an unreleased view is not consumed). Idempotent."""
        if self._h is _NULL:
            return
        self._view = None
        h, self._h, self._hi = self._h, _NULL, 0
        lib.pk_reader_detach(h)

    def __repr__(self) -> str:
        return f"<Reader of {self._name!r}{' closed' if self.closed else ''}>"
