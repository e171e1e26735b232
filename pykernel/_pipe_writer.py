"""The sending end of a pipe: :class:`Writer` (copying, batch, packed and zero-copy sends)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pykernel._core import ffi, lib
from pykernel._errors import MessageSizeError, PipeArgumentError
from pykernel._fastcall import reserve as _try_reserve
from pykernel._fastcall import send as _try_send
from pykernel._pipe_ends import (
    _EINTR,
    _EMSGSIZE,
    _NULL,
    _SLICE,
    _again,
    _as_char,
    _End,
    _from_buffer,
    _wait_ns,
    timeout_ns,
)
from pykernel._pipe_errno import transfer_error
from pykernel._pipe_zero import Slot

if TYPE_CHECKING:
    from pykernel._pipe import Pipe

_send = lib.pk_send
_reserve = lib.pk_reserve
_buffer = ffi.buffer
_send_batch = lib.pk_send_batch
_send_strided = lib.pk_send_strided


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
        if type(n) is not int or not 0 <= n <= self._max:  # bool is not int here
            raise MessageSizeError(
                f"pipe {self._name!r}: reserve of {n!r} bytes, slot size is {self._max}"
            )
        if self._slot is not None:
            raise PipeArgumentError(f"pipe {self._name!r}: a reserved slot is still open")
        t = _wait_ns(timeout)  # a bad timeout fails first
        mv = _try_reserve(self._hi, n)  # GIL held, when a slot is free now
        if type(mv) is not memoryview:
            rc = _reserve(self._h, self._ptr, t)
            if rc != 1:
                rc = _again(_reserve, (self._h, self._ptr), timeout, rc)
            if rc != 1:
                raise transfer_error(rc, name=self._name, reading=False, timeout=timeout)
            mv = memoryview(_buffer(self._ptr[0], n))
        self._slot = Slot(self, mv, n)
        return self._slot

    def _abort(self) -> None:
        if self._h is not _NULL:
            lib.pk_abort(self._h)

    def _drop_open(self) -> None:
        if self._slot is not None:  # detaching aborts it in C
            self._slot._forget()
            self._slot = None

    def _detach(self, handle: Any) -> None:
        lib.pk_writer_detach(handle)
