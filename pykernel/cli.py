"""The ``pykernel`` command: one program, verbs contributed by each package.

Verbs are found through the ``pykernel.verbs`` entry-point group, so this module never
imports ``control`` or ``discovery``. Each entry point is a ``register(subparsers)``
function that adds its parsers and sets ``func`` (``args -> int``) as a default; its name
lists the verbs it registers, comma-separated, so ``pykernel VERB`` imports only the group
that has VERB (``--help``, no verb or an unknown one load every group).

Conventions every verb follows: data verbs take ``--json``; errors are one line on
stderr with a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any, NoReturn

from pykernel._errors import PykernelError, UsageError

EXIT_INTERNAL = 70  # EX_SOFTWARE: a bug, not bad input
EXIT_INTERRUPTED = 130


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are typed (UsageError), so they leave as one line.

    Use it (and as ``parser_class`` of its subparsers) for any command run through
    :func:`run_parser`.
    """

    def error(self, message: str) -> NoReturn:
        """Raise :class:`UsageError` naming the (sub-)verb instead of exiting."""
        # run_parser() prefixes "pykernel: ", so name only the sub-verb here.
        verb = self.prog.removeprefix("pykernel").strip()
        raise UsageError(f"{verb}: {message}" if verb else message)


_Parser = Parser  # the former private name, kept for callers that still use it


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    """Add the standard ``--json`` flag to a data verb's parser."""
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def emit(args: argparse.Namespace, data: Any, render: Callable[[Any], str]) -> None:
    """Print ``data`` as JSON when ``--json`` was given, else as ``render(data)``."""
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
    else:
        text = render(data)
        if text:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")


def verbs_of(entry_point_name: str) -> list[str]:
    """Return the verbs a ``pykernel.verbs`` entry point's name lists (comma-separated)."""
    return [v.strip() for v in entry_point_name.split(",") if v.strip()]


def _load_verbs(sub: argparse._SubParsersAction, verb: str | None) -> None:
    groups = sorted(entry_points(group="pykernel.verbs"), key=lambda e: e.name)
    if verb is not None:
        # Only the group that has the verb: the others' imports cost every call ~0.5 s.
        groups = [ep for ep in groups if verb in verbs_of(ep.name)] or groups
    for ep in groups:
        module = ep.value.split(":", 1)[0]
        try:
            register = ep.load()
        except ModuleNotFoundError as exc:
            # A verb group whose own module is not installed is simply absent; a missing
            # dependency *inside* an existing module is a real bug and propagates.
            if exc.name and module.startswith(exc.name):
                continue
            raise
        register(sub)


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """Build the ``pykernel`` argument parser.

    Args:
        verb: load only the verb group that lists this verb (all groups when None or
            when no group lists it, so an unknown verb is named among every known one).

    """
    parser = Parser(prog="pykernel", description="pykernel: pipes, wiring and control.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=Parser)
    sub.required = True
    _load_verbs(sub, verb)
    return parser


def _verb_in(argv: Sequence[str] | None) -> str | None:
    """Return the verb of a command line: its first argument, unless that is an option."""
    args = sys.argv[1:] if argv is None else list(argv)
    return args[0] if args and not args[0].startswith("-") else None


def run_parser(parser: argparse.ArgumentParser | Callable[[], argparse.ArgumentParser],
               argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the chosen verb's ``func`` and return the exit status.

    This is where the CLI's error rules live, for ``pykernel`` and for any other entry point
    (``python -m discovery``): a :class:`PykernelError` is one ``pykernel:`` line on stderr
    with its ``exit_code``; Ctrl-C is exit 130; a closed stdout is exit 0; anything else is
    one ``internal error`` line with exit 70, never a traceback.

    Args:
        parser: the parser (a :class:`Parser`), or a function building it, so that errors
            while building (loading verb groups) are handled the same way.
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The process exit status.

    """
    try:
        if not isinstance(parser, argparse.ArgumentParser):
            parser = parser()
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except PykernelError as exc:
        print(f"pykernel: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("pykernel: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except Exception as exc:  # last line of defence: never a traceback
        print(f"pykernel: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_INTERNAL


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pykernel`` command and return its exit status."""
    return run_parser(lambda: build_parser(_verb_in(argv)), argv)


if __name__ == "__main__":
    sys.exit(main())
