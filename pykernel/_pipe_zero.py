"""Zero-copy handles: a reserved writable :class:`Slot` and a read-only :class:`View`.

Both point straight into the shared ring; the buffers and numpy arrays made from them are
valid until the slot is committed/aborted or the view released.
"""

from __future__ import annotations

import contextlib
import math
from types import TracebackType
from typing import TYPE_CHECKING, Any

from pykernel._errors import ClosedError, MessageSizeError
from pykernel._fastcall import commit as _commit
from pykernel._fastcall import release as _release
from pykernel._pipe_errno import transfer_error

if TYPE_CHECKING:
    import numpy as np

    from pykernel._pipe_reader import Reader
    from pykernel._pipe_writer import Writer

_numpy: Any = None


def _np() -> Any:
    global _numpy
    if _numpy is None:
        import numpy  # deferred: numpy is needed only for zero-copy arrays

        _numpy = numpy
    return _numpy


def _array(raw: memoryview, nbytes: int, dtype: Any, shape: Any, what: str) -> np.ndarray:
    """Return a numpy view of the slot memory ``raw`` as ``dtype`` in ``shape``.

    ``shape`` None means as many items as fit. numpy itself refuses arrays larger than the
    buffer; that refusal becomes a MessageSizeError.
    """
    np = _np()
    try:
        if type(shape) is int:
            return np.frombuffer(raw, dtype=dtype, count=shape)
        if shape is None:
            return np.frombuffer(raw, dtype=dtype, count=nbytes // np.dtype(dtype).itemsize)
        return np.frombuffer(raw, dtype=dtype, count=math.prod(shape)).reshape(shape)
    except ValueError as exc:
        raise MessageSizeError(
            f"array {shape} of {np.dtype(dtype)} does not fit in the {what}'s {nbytes} bytes"
        ) from exc


def _release_buffer(mv: memoryview) -> None:
    """Release a memoryview over the ring, so later use raises instead of touching it.

    A numpy array made from it keeps it exported (BufferError): the caller promised not to
    use that array after commit/release.
    """
    with contextlib.suppress(BufferError):
        mv.release()


class Slot:
    """A reserved, writable slot (from :meth:`Writer.reserve`); commit or abort it once.

    As a context manager it commits on a clean exit and aborts on an exception. The buffer
    and arrays made from it must not be used after the slot is committed or aborted.

    Attributes:
        nbytes: the message length that :meth:`commit` publishes by default.

    """

    __slots__ = ("_mv", "_w", "nbytes")

    def __init__(self, writer: Writer, mv: memoryview, nbytes: int) -> None:
        self._w: Writer | None = writer
        self._mv = mv  # over the slot itself; released at commit/abort
        self.nbytes = nbytes

    @property
    def buffer(self) -> memoryview:
        """A writable memoryview of the ``nbytes`` reserved bytes inside the shared ring."""
        return self._mv

    def array(self, dtype: Any, shape: int | tuple[int, ...]) -> np.ndarray:
        """Return a writable numpy view of the slot's bytes as ``dtype`` in ``shape``.

        Raises:
            MessageSizeError: the array does not fit in the reserved bytes.

        """
        return _array(self._mv, self.nbytes, dtype, shape, "slot")

    def commit(self, nbytes: int | None = None) -> None:
        """Publish the first ``nbytes`` bytes (default: the reserved size) as one message."""
        w = self._done()
        n = self.nbytes if nbytes is None else nbytes
        if type(n) is not int or not 0 <= n <= self.nbytes:  # bool is not int here
            w._abort()
            raise MessageSizeError(f"commit of {n!r} bytes: reserved {self.nbytes}")
        rc = _commit(w._hi, n)  # never waits: with the GIL held
        if rc != 1:
            raise transfer_error(rc, name=w.pipe.name, reading=False, timeout=None)

    def abort(self) -> None:
        """Give the slot back without publishing anything."""
        self._done()._abort()

    def _done(self) -> Writer:
        w = self._w
        if w is None:
            raise ClosedError("this slot was already committed or aborted")
        self._forget()
        w._slot = None
        return w

    def _forget(self) -> None:
        """Cut the slot off its writer and its buffer (the ring may be reused or unmapped)."""
        self._w = None
        _release_buffer(self._mv)

    def __enter__(self) -> Slot:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._w is None:
            return
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class View:
    """A read-only view of the next message (from :meth:`Reader.view`), until released.

    As a context manager it releases on exit. In lossy mode a writer may overwrite the slot
    while it is viewed; :attr:`valid` (after release) says whether the view stayed intact.

    Attributes:
        nbytes: the message length.
        valid: after release: False if a lossy writer overwrote the message meanwhile.

    """

    __slots__ = ("_mv", "_r", "nbytes", "valid")

    def __init__(self, reader: Reader, mv: memoryview) -> None:
        self._r: Reader | None = reader
        self._mv = mv  # read-only, over the slot itself; released at release()
        self.nbytes = len(mv)
        self.valid = True

    @property
    def buffer(self) -> memoryview:
        """A read-only memoryview of the message inside the shared ring."""
        return self._mv

    def array(self, dtype: Any, shape: int | tuple[int, ...] | None = None) -> np.ndarray:
        """Return a read-only numpy view of the message as ``dtype`` (all when no shape)."""
        return _array(self._mv, self.nbytes, dtype, shape, "message")  # read-only already

    def release(self) -> bool:
        """Consume the message and give its slot back; returns :attr:`valid`."""
        r = self._r
        if r is None:
            raise ClosedError("this view was already released")
        self._forget()
        r._view = None
        rc = _release(r._hi)  # never waits: with the GIL held
        if rc < 0:
            raise transfer_error(rc, name=r.pipe.name, reading=True, timeout=None)
        self.valid = rc == 1
        return self.valid

    def _forget(self) -> None:
        """Cut the view off its reader and its buffer (the ring may be reused or unmapped)."""
        self._r = None
        _release_buffer(self._mv)

    def __enter__(self) -> View:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._r is not None:
            self.release()
