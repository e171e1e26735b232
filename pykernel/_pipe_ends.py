"""What the two ends of a pipe share: closing, spinning, timeouts, the fast path's binding.

:class:`~pykernel._pipe_writer.Writer` and :class:`~pykernel._pipe_reader.Reader` build on
:class:`_End`. The hot calls are thin: ``send`` and ``recv`` first try the GIL-held fast
path (``pykernel._fastcall``: done at once when room or a message is there, ~0.1 us a
pair); whatever must wait or fail makes the full cffi call, which releases the GIL, waits
inside C, counts and raises. No per-call allocation; lib functions are bound once at import.
"""

from __future__ import annotations

import errno
import math
from types import TracebackType
from typing import TYPE_CHECKING, Any

from pykernel._core import ffi, lib
from pykernel._errors import ClosedError, PipeArgumentError
from pykernel._fastcall import bind as _bind_fast  # the calls are imported by each end

if TYPE_CHECKING:
    from pykernel._pipe import Pipe

_from_buffer = ffi.from_buffer
_NULL = ffi.NULL
_bind_fast(
    *(
        int(ffi.cast("uintptr_t", ffi.addressof(lib, name)))
        for name in (
            "pk_send_try",
            "pk_recv_try",
            "pk_reserve_try",
            "pk_view_try",
            "pk_commit",
            "pk_abort",
            "pk_release",
            "pk_view_cancel",
        )
    )
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
        """Detach from the pipe (idempotent).

        A writer's open reserved slot is aborted; a reader's unreleased view is not
        consumed (the message stays for the next reader).
        """
        if self._h is _NULL:
            return
        self._drop_open()
        h, self._h, self._hi = self._h, _NULL, 0  # the fast path sees 0: closed
        self._detach(h)

    def _drop_open(self) -> None:
        """Forget an open zero-copy slot or view (it dies with the end)."""
        raise NotImplementedError

    def _detach(self, handle: Any) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._name!r}{' closed' if self.closed else ''}>"

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
