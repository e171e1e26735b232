"""The one exception tree of pykernel.

Every error pykernel, control and discovery raise on purpose derives from
:class:`PykernelError`. The CLI turns any of them into one line on stderr and the
error's ``exit_code``; anything else is a bug.

::

    PykernelError
     ├── UsageError                 bad command-line arguments (exit 2)
     └── PipeError                  anything about a pipe
          ├── ClosedError           this handle (or its pipe) was closed here
          ├── PeerGoneError         the other side is gone (died or detached)
          │    ├── WriterGoneError  a reader waits, no writer is left
          │    └── ReaderGoneError  a writer waits for room, the reader is gone
          ├── PipeTimeout           a blocking call timed out (also a TimeoutError)
          ├── WouldBlock            a non-blocking call could not proceed
          │    ├── PipeFull
          │    └── PipeEmpty
          ├── PipeBusyError         every reader/writer place of the pipe is taken
          ├── PipeArgumentError     bad argument, found before any C call (a ValueError)
          │    ├── GeometryError    bad slot size/count/shape, or a geometry mismatch
          │    ├── MessageSizeError a message larger than the pipe's slot size
          │    └── PipeNameError    a name outside [A-Za-z0-9_.-]{1,200}
          └── SegmentError          the shared-memory object is unusable (magic, ABI, room)
               ├── PipeExistsError  (also a FileExistsError)
               └── PipeNotFoundError (also a FileNotFoundError)

Lower layers add their own branches (wiring, Hostess, discovery in their packages),
always under :class:`PykernelError`.
"""

from __future__ import annotations


class PykernelError(Exception):
    """Root of every error pykernel raises on purpose.

    Attributes:
        exit_code: the process exit status the CLI uses for this error.

    """

    exit_code: int = 1


class UsageError(PykernelError):
    """A command line that cannot be carried out as written."""

    exit_code = 2


class PipeError(PykernelError):
    """Root of every error about a pipe."""


class ClosedError(PipeError):
    """The handle (writer, reader, view, slot or pipe) was already closed by this process."""


class PeerGoneError(PipeError):
    """The process on the other side of the pipe died or detached."""


class WriterGoneError(PeerGoneError):
    """A reader found the pipe empty and no live writer attached (after one had been)."""


class ReaderGoneError(PeerGoneError):
    """A writer found the pipe full and its reader gone (after one had been attached)."""


class PipeTimeout(PipeError, TimeoutError):
    """A blocking call did not complete within its timeout."""


class WouldBlock(PipeError):
    """A non-blocking call (``*_nowait``) could not proceed right now."""


class PipeFull(WouldBlock):
    """``send_nowait``: no free slot (a reader has not consumed enough yet)."""


class PipeEmpty(WouldBlock):
    """``recv_nowait``: no message waiting."""


class PipeBusyError(PipeError):
    """Every reader or writer place of the pipe is held by a live process."""


class PipeArgumentError(PipeError, ValueError):
    """An argument is invalid; raised before anything is sent to the C core."""


class GeometryError(PipeArgumentError):
    """Slot size, slot count, shape or peer limits are invalid, or do not match a segment."""


class MessageSizeError(PipeArgumentError):
    """A message is larger than the pipe's slot size."""


class PipeNameError(PipeArgumentError):
    """A pipe name is not 1..200 characters of ``[A-Za-z0-9_.-]``."""


class SegmentError(PipeError):
    """The shared-memory object cannot be used: wrong magic or ABI, no room, no access."""


class PipeExistsError(SegmentError, FileExistsError):
    """A pipe of that name already exists (and ``exist_ok`` was false)."""


class PipeNotFoundError(SegmentError, FileNotFoundError):
    """No pipe of that name exists."""
