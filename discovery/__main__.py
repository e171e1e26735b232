"""``python -m discovery VERB``: the discovery verbs, also where no entry points are installed.

The same verbs as ``pykernel neighbors`` etc. (see :mod:`discovery.cli`), run through
:func:`pykernel.cli.run_parser`, so the same rules hold: errors are one line on stderr and a
non-zero exit status, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from discovery.cli import register
from pykernel.cli import Parser, run_parser


def build_parser() -> Parser:
    """Build the ``python -m discovery`` parser with every discovery verb."""
    parser = Parser(prog="python -m discovery", description="pykernel discovery verbs")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=Parser)
    sub.required = True
    register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one discovery verb and return the exit status."""
    return run_parser(build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())
