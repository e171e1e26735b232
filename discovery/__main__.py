"""``python -m discovery VERB``: the discovery verbs, also where no entry points are installed.

The same verbs as ``pykernel neighbors`` etc. (see :mod:`discovery.cli`), with the same
rules: errors are one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from discovery.cli import register
from pykernel import PykernelError, UsageError


class _Parser(argparse.ArgumentParser):
    """Argument errors leave as a typed UsageError (one line)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one discovery verb and return the exit status."""
    parser = _Parser(prog="python -m discovery", description="pykernel discovery verbs")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    sub.required = True
    register(sub)
    try:
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except PykernelError as exc:
        print(f"pykernel: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
