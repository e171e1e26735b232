"""pykernel: shared-memory ring pipes with fan-out and fan-in.

The public face is re-exported here from private modules.
"""

from __future__ import annotations

from pykernel._errors import PykernelError, UsageError

__all__ = ["PykernelError", "UsageError"]
__version__ = "0.1.0"
