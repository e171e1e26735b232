"""Translate the C core's ``-errno`` codes into pykernel exceptions, in one place."""

from __future__ import annotations

import errno
import os

from pykernel._errors import (
    ClosedError,
    GeometryError,
    MessageSizeError,
    PipeBusyError,
    PipeEmpty,
    PipeError,
    PipeExistsError,
    PipeFull,
    PipeNotFoundError,
    PipeTimeout,
    ReaderGoneError,
    SegmentError,
    WriterGoneError,
)

_SEGMENT = {
    errno.EEXIST: (PipeExistsError, "already exists"),
    errno.ENOENT: (PipeNotFoundError, "does not exist"),
    errno.EBADMSG: (SegmentError, "is not a pykernel pipe (bad magic or truncated header)"),
    errno.EPROTO: (SegmentError, "was made by an incompatible pykernel (ABI version differs)"),
    errno.EDOM: (GeometryError, "has a header that does not match its size (corrupt geometry)"),
    errno.EAGAIN: (SegmentError, "is still being created (or its creator died half way)"),
    errno.EACCES: (SegmentError, "is not accessible to this user (permission denied)"),
    errno.EPERM: (SegmentError, "is not accessible to this user (operation not permitted)"),
    errno.ENOSPC: (SegmentError, "does not fit: no room left in /dev/shm"),
    errno.ENOMEM: (SegmentError, "cannot be mapped: out of memory"),
}


def segment_error(rc: int, name: str) -> PipeError:
    """Return the exception for a failed create/open/unlink of pipe ``name`` (``rc`` is -errno)."""
    cls, text = _SEGMENT.get(-rc, (SegmentError, os.strerror(-rc)))
    return cls(f"pipe {name!r} {text}")


def transfer_error(rc: int, *, name: str, reading: bool, timeout: float | None) -> PipeError:
    """Return the exception for a send/recv-family result ``rc`` that was not a success.

    Args:
        rc: 0 (nothing within the timeout) or -errno from the C core.
        name: the pipe's name, for the message.
        reading: True on the reader side (a gone peer is then the writer).
        timeout: the caller's timeout; 0 means a non-blocking call.

    """
    if rc == 0:
        if timeout == 0:
            return (
                PipeEmpty(f"pipe {name!r} is empty")
                if reading
                else PipeFull(f"pipe {name!r} is full")
            )
        return PipeTimeout(
            f"pipe {name!r}: nothing {'arrived' if reading else 'sent'} within {timeout} s"
        )
    code = -rc
    if code == errno.EPIPE:
        if reading:
            return WriterGoneError(f"pipe {name!r}: no writer is left (it died or detached)")
        return ReaderGoneError(f"pipe {name!r}: the reader is gone and the pipe is full")
    if code == errno.EBADF:
        return ClosedError(f"pipe {name!r}: this {'reader' if reading else 'writer'} is closed")
    if code == errno.EMSGSIZE:
        return MessageSizeError(f"pipe {name!r}: message larger than the slot size")
    if code == errno.EBADMSG:
        return SegmentError(
            f"pipe {name!r}: a published slot holds a length beyond the slot size "
            "(the segment is damaged)"
        )
    if code == errno.EALREADY:
        return PipeError(f"pipe {name!r}: a {'view' if reading else 'reservation'} is still open")
    return PipeError(f"pipe {name!r}: {os.strerror(code)}")


def attach_error(rc: int, *, name: str, reading: bool) -> PipeError:
    """Return the exception for a failed reader/writer attach."""
    side = "reader" if reading else "writer"
    if -rc in (errno.EBUSY, errno.ENOSPC):
        if -rc == errno.EBUSY:
            return PipeBusyError(f"pipe {name!r} already has a live {side}")
        return PipeBusyError(f"pipe {name!r}: every {side} place is taken by a live process")
    return PipeError(f"pipe {name!r}: cannot attach a {side}: {os.strerror(-rc)}")
