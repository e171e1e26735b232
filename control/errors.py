"""Control's branch of the pykernel exception tree.

::

    PykernelError                     (pykernel)
     └── ControlError                 anything control rejects on purpose
          ├── ManifestError           a manifest declared in code is invalid (field named)
          ├── WiringError             a wiring file failed lint (file:line:column, field)
          └── PlanError               a plan document (JSON) is malformed

Lint itself never raises for bad content: it returns every problem as a diagnostic.
:class:`WiringError` is what callers that *need* a valid system (``build_plan``,
``pykernel plan``, ``pykernel up``) get, carrying all the error diagnostics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pykernel import PykernelError

if TYPE_CHECKING:
    from control.wiring import Diagnostic


class ControlError(PykernelError):
    """Root of every error the control package raises on purpose."""


class ManifestError(ControlError):
    """A manifest declared in code (``@manifest``/``terminal``) is invalid.

    Attributes:
        field: dotted path of the offending field, e.g. ``terminals[0].direction``.

    """

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


class WiringError(ControlError):
    """A wiring file (or a manifest file it names) has errors.

    Attributes:
        diagnostics: every error diagnostic, in file order.
        file: file of the first error.
        line: 1-based line of the first error (0 when unknown).
        column: 1-based column of the first error (0 when unknown).
        field: dotted field path of the first error.

    """

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = tuple(diagnostics)
        first = self.diagnostics[0] if self.diagnostics else None
        self.file = first.file if first else ""
        self.line = first.line if first else 0
        self.column = first.column if first else 0
        self.field = first.field if first else ""
        if first is None:
            text = "invalid wiring"
        else:
            text = first.format()
            more = len(self.diagnostics) - 1
            if more:
                text += f" (and {more} more error{'s' if more > 1 else ''}; run `pykernel lint`)"
        super().__init__(text)


class PlanError(ControlError):
    """A plan document cannot be read back (bad JSON, wrong types, missing fields)."""
