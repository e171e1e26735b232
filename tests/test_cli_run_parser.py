"""pykernel.cli.run_parser: the one place the CLI's error rules live (pykernel, discovery)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest

from pykernel import PykernelError, UsageError
from pykernel.cli import EXIT_INTERNAL, EXIT_INTERRUPTED, Parser, main, run_parser


def _parser(func: Callable[[argparse.Namespace], int | None]) -> Parser:
    """A real two-level parser whose one verb runs ``func``."""
    parser = Parser(prog="pykernel")
    sub = parser.add_subparsers(dest="verb", parser_class=Parser)
    sub.required = True
    verb = sub.add_parser("go")
    verb.add_argument("--n", type=int, default=0)
    verb.set_defaults(func=func)
    return parser


def _raise(exc: BaseException) -> Callable[[argparse.Namespace], int]:
    def func(args: argparse.Namespace) -> int:
        raise exc

    return func


class TestRunParser:
    """Every outcome of a verb is an exit status and at most one stderr line."""

    def test_the_verb_status_is_returned(self) -> None:
        """A verb's return value is the exit status (None counts as 0)."""
        assert run_parser(_parser(lambda a: a.n), ["go", "--n", "3"]) == 3
        assert run_parser(_parser(lambda a: None), ["go"]) == 0

    def test_typed_error_uses_its_exit_code(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A PykernelError is one `pykernel:` line with the error's exit_code."""

        class Refused(PykernelError):
            exit_code = 3

        assert run_parser(_parser(_raise(Refused("no, because"))), ["go"]) == 3
        assert capsys.readouterr().err == "pykernel: no, because\n"

    def test_bad_arguments_are_a_usage_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        """An argument the parser refuses is exit 2, naming the sub-verb and option."""
        assert run_parser(_parser(lambda a: 0), ["go", "--n", "x"]) == UsageError.exit_code
        err = capsys.readouterr().err
        assert err.startswith("pykernel: go: argument --n: invalid int value")
        assert err.count("\n") == 1

    def test_a_bug_is_one_internal_error_line(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Any other exception is exit 70 with one line naming its type, never a traceback."""
        assert run_parser(_parser(_raise(ValueError("bad\nworse"))), ["go"]) == EXIT_INTERNAL
        err = capsys.readouterr().err
        assert err.startswith("pykernel: internal error: ValueError: bad")
        assert "Traceback" not in err

    def test_errors_while_building_are_caught(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Given a function that builds the parser, its failure is handled the same way."""

        def build() -> Parser:
            raise ImportError("a verb group is broken")

        assert run_parser(build, ["go"]) == EXIT_INTERNAL
        assert capsys.readouterr().err == (
            "pykernel: internal error: ImportError: a verb group is broken\n")

    def test_interrupt_and_closed_stdout(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Ctrl-C is exit 130 with one line; a closed stdout (EPIPE) is a quiet exit 0."""
        assert run_parser(_parser(_raise(KeyboardInterrupt())), ["go"]) == EXIT_INTERRUPTED
        assert capsys.readouterr().err == "pykernel: interrupted\n"
        assert run_parser(_parser(_raise(BrokenPipeError())), ["go"]) == 0
        assert capsys.readouterr().err == ""

    def test_main_is_run_parser_over_every_verb(self, capsys: pytest.CaptureFixture[str]) -> None:
        """`pykernel` without a verb goes through the same rules: one usage line, exit 2."""
        assert main([]) == 2
        assert capsys.readouterr().err.startswith("pykernel: the following arguments")
