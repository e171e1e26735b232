"""pykernel: shared-memory ring pipes with fan-out and fan-in, and the executor.

The public face is re-exported here from private modules; ``tests/test_pipe_exports.py``
guards it (``__all__`` is the list below, every name has a docstring).
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
from pykernel._executor import Executor, builtin_services
from pykernel._pipe import Pipe
from pykernel._pipe_host import PipeInfo, clean_pipes, list_pipes
from pykernel._pipe_reader import Reader
from pykernel._pipe_stats import PipeStats, ReaderStats, WriterStats
from pykernel._pipe_writer import Writer
from pykernel._pipe_zero import Slot, View
from pykernel._supervise import (
    BootError,
    ExecutorError,
    ExecutorPhase,
    ExecutorStatus,
    ServiceSpec,
    ServiceState,
    ServiceStatus,
    SpecError,
)

__all__ = [
    "BootError",
    "ClosedError",
    "Executor",
    "ExecutorError",
    "ExecutorPhase",
    "ExecutorStatus",
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
    "ServiceSpec",
    "ServiceState",
    "ServiceStatus",
    "Slot",
    "SpecError",
    "UsageError",
    "View",
    "WouldBlock",
    "Writer",
    "WriterGoneError",
    "WriterStats",
    "builtin_services",
    "clean_pipes",
    "list_pipes",
]
__version__ = "0.1.0"
