"""pykernel: shared-memory ring pipes with fan-out and fan-in.

The public face is re-exported here from private modules.
"""

from __future__ import annotations

from pykernel._errors import (
    ClosedError,
    GeometryError,
    MessageSizeError,
    PeerGoneError,
    PipeArgumentError,
    PipeBusyError,
    PipeEmpty,
    PipeError,
    PipeExistsError,
    PipeFull,
    PipeNameError,
    PipeNotFoundError,
    PipeTimeout,
    PykernelError,
    ReaderGoneError,
    SegmentError,
    UsageError,
    WouldBlock,
    WriterGoneError,
)
from pykernel._pipe import Pipe
from pykernel._pipe_ends import Reader, Writer
from pykernel._pipe_host import PipeInfo, clean_pipes, list_pipes
from pykernel._pipe_stats import PipeStats, ReaderStats, WriterStats
from pykernel._pipe_zero import Slot, View

__all__ = [
    "ClosedError",
    "GeometryError",
    "MessageSizeError",
    "PeerGoneError",
    "Pipe",
    "PipeArgumentError",
    "PipeBusyError",
    "PipeEmpty",
    "PipeError",
    "PipeExistsError",
    "PipeFull",
    "PipeInfo",
    "PipeNameError",
    "PipeNotFoundError",
    "PipeStats",
    "PipeTimeout",
    "PykernelError",
    "Reader",
    "ReaderGoneError",
    "ReaderStats",
    "SegmentError",
    "Slot",
    "UsageError",
    "View",
    "WouldBlock",
    "Writer",
    "WriterGoneError",
    "WriterStats",
    "clean_pipes",
    "list_pipes",
]
__version__ = "0.1.0"
