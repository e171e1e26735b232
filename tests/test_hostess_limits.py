"""Hostess bounds a query's limit itself, and the CLI tells a bad filter in one line.

The registry is real SQLite in a temporary directory; the CLI runs through
:func:`pykernel.cli.run_parser` with the hostess verbs registered as ``pykernel`` does.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control.hostess import Hostess
from control.hostess.cli import register
from control.hostess.errors import InputError, QueryError
from control.hostess.registry import MAX_LIMIT
from pykernel.cli import Parser, run_parser


def _parser() -> Parser:
    """The `pykernel` parser with only the hostess verbs, registered as pykernel does."""
    parser = Parser(prog="pykernel")
    sub = parser.add_subparsers(dest="verb", parser_class=Parser)
    sub.required = True
    register(sub)
    return parser


def _cli(db: Path, *argv: str) -> tuple[int, str, str]:
    """Run `pykernel hostess VERB --db DB ARGS...`; return (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run_parser(_parser(), ["hostess", argv[0], "--db", str(db), *argv[1:]])
    return code, out.getvalue(), err.getvalue()


def _one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pykernel: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def book(tmp_path: Path) -> Hostess:
    """An empty registry in a temporary file (closed after the test)."""
    with Hostess(tmp_path / "h.sqlite") as hostess:
        yield hostess  # type: ignore[misc]


class TestQueryLimit:
    """Hostess.query takes a limit from 1 to MAX_LIMIT, the HTTP API's bound."""

    @pytest.mark.parametrize("limit", [0, -1, MAX_LIMIT + 1, 2**63, 2**64, True, 1.0, "5"])
    def test_out_of_bounds_is_input_error(self, book: Hostess, limit: object) -> None:
        """A limit SQLite would choke on (or not an int) is InputError on `limit`."""
        with pytest.raises(InputError, match=r"^limit: .* must be an int in \[1, 9999999\]$"):
            book.query("", limit=limit)  # type: ignore[arg-type]

    @pytest.mark.parametrize("limit", [1, MAX_LIMIT])
    def test_bounds_are_accepted(self, book: Hostess, limit: int) -> None:
        """The smallest and largest limits run (an empty book answers nothing)."""
        assert book.query("", limit=limit) == []

    def test_same_bound_as_http(self) -> None:
        """MAX_LIMIT is the largest value the HTTP API's `limit` pattern admits."""
        assert MAX_LIMIT == 9_999_999
        assert re.fullmatch(r"[1-9][0-9]{0,6}", str(MAX_LIMIT))
        assert not re.fullmatch(r"[1-9][0-9]{0,6}", str(MAX_LIMIT + 1))

    @settings(max_examples=100, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(limit=st.integers(min_value=-(2**70), max_value=2**70))
    def test_any_int_answers_or_is_refused(self, book: Hostess, limit: int) -> None:
        """Any integer: a list within bounds, InputError outside, never an SQLite error."""
        if 1 <= limit <= MAX_LIMIT:
            assert book.query("", limit=limit) == []
        else:
            with pytest.raises(InputError, match="limit"):
                book.query("", limit=limit)

    def test_cli_names_the_limit(self, tmp_path: Path) -> None:
        """`hostess list --limit 2**64`: one line naming limit and range, exit 1."""
        code, out, err = _cli(tmp_path / "h.sqlite", "list", "--limit", str(2**64))
        assert (code, out) == (1, "")
        assert _one_line(err) == ("pykernel: limit: 18446744073709551616 must be an int in "
                                  "[1, 9999999]")


class TestFilterErrors:
    """A bad filter is one stderr line with the column, the token and the expression."""

    def test_one_line_with_column(self, tmp_path: Path) -> None:
        """The line names column, token and the whole expression; exit 1, no output."""
        code, out, err = _cli(tmp_path / "h.sqlite", "query", "owner=a x")
        assert (code, out) == (1, "")
        assert _one_line(err) == ("pykernel: query column 9 ('x') in 'owner=a x': expected "
                                  "FIELD=VALUE, class&MASK=VALUE, free or used")

    def test_control_characters_stay_on_the_line(self, tmp_path: Path) -> None:
        """A newline or tab in the expression is shown escaped, never as a line break."""
        code, _, err = _cli(tmp_path / "h.sqlite", "query", "owner=a\nownr=b")
        assert code == 1
        assert "in 'owner=a\\nownr=b'" in _one_line(err)

    def test_still_a_query_error(self) -> None:
        """The CLI's error keeps QueryError's type and fields (column, token)."""
        from control.hostess.cli import FilterError

        exc = FilterError("tag=gpu ownr=x", 9, "ownr", "unknown field")
        assert isinstance(exc, QueryError)
        assert (exc.column, exc.token) == (9, "ownr")
        assert str(exc) == "query column 9 ('ownr') in 'tag=gpu ownr=x': unknown field"

    @settings(max_examples=80, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(expr=st.text(alphabet=st.sampled_from(list("class&=0xf1 tag*?[]\n\t.freused-owner")),
                        min_size=1, max_size=30))
    def test_any_filter_lists_or_fails_in_one_line(self, tmp_path: Path, expr: str) -> None:
        """Any filter text: exit 0 with a listing, or exit 1 with exactly one line."""
        code, out, err = _cli(tmp_path / "h.sqlite", "query", "--json", "--limit=3", "--", expr)
        assert code in (0, 1), err
        if code:
            assert out == ""
            _one_line(err)
        else:
            assert err == ""


class TestDbHelp:
    """--db's help says where the registry really is by default."""

    def test_help_names_env_and_state_path(self) -> None:
        """No '(default: None)': the variable and the XDG state path are named."""
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
            _parser().parse_args(["hostess", "list", "--help"])
        text = " ".join(out.getvalue().split())
        assert "default: None" not in text
        assert "$PYKERNEL_HOSTESS_DB" in text
        assert "$XDG_STATE_HOME/pykernel/hostess.sqlite" in text
