"""The one exception tree of pykernel.

Every error pykernel, control and discovery raise on purpose derives from
:class:`PykernelError`. The CLI turns any of them into one line on stderr and the
error's ``exit_code``; anything else is a bug.

::

    PykernelError
     └── UsageError          bad command-line arguments (exit 2)

Lower layers add their own branches (pipes here; wiring, Hostess, discovery in their
packages), always under :class:`PykernelError`.
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
