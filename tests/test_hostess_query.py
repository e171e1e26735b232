"""Spec of the Hostess filter language: syntax, errors with carets, and what it selects."""

from __future__ import annotations

import contextlib
import fnmatch
import random
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control.hostess import (
    DIRECTIONS,
    Guest,
    Hostess,
    Identity,
    InsufficientError,
    Lease,
    QueryError,
    TerminalSpec,
)
from control.hostess.query import parse


class TestSyntax:
    def test_empty_matches_all(self) -> None:
        """The empty expression has no conditions."""
        query = parse("   ")
        assert query.guest_sql == "1" and not query.has_terminal_terms

    def test_documented_example(self) -> None:
        """The README's example compiles to guest and terminal conditions."""
        query = parse(
            "class&0xff00=0x1200 owner=lab* tag=gpu tag=fast terminal.direction=input free"
        )
        assert query.guest_params == (0xFF00, 0x1200, 0x12, "lab*", "gpu", "fast")
        assert query.terminal_params == ("input",)
        assert query.has_terminal_terms

    def test_high_class_bits_map_to_signed(self) -> None:
        """A 64-bit mask is stored the way SQLite's signed integers see it."""
        params = parse("class&0xffffffffffffffff=0x8000000000000000").guest_params
        assert params[:2] == (-1, -(1 << 63))
        assert params[2:] == (0, 0, 0, 0, 0, 0, 0, 0x80)  # one equality per byte index

    def test_partial_mask_bytes_become_ranges(self) -> None:
        """A run of top bits in a mask byte is a range on that byte's index; 0x0f is not."""
        query = parse("class&0xf00f=0x3001")
        assert "((g.class >> 8) & 255) BETWEEN ? AND ?" in query.guest_sql
        assert query.guest_params[2:] == (0x30, 0x3F)
        assert "g.class >> 0" not in query.guest_sql


class TestIndexed:
    @pytest.mark.parametrize(
        ("expr", "index"),
        [
            ("class&0xff00=0x1200", "guests_class_b1"),
            ("class&0xf0000000=0x30000000", "guests_class_b3"),
            ("class=0x1234", "guests_class_b"),
            ("owner=lab7", "guests_owner"),
            ("owner=lab*", "guests_owner"),
            ("server=cam0", "guests_servername"),
            ("fqdn=h1.lab", "sqlite_autoindex_guests_2"),
            ("tag=gpu tag=fast", "PRIMARY KEY"),
            ("used", "terminals_used"),
        ],
    )
    def test_no_full_scan(self, tmp_path: Path, expr: str, index: str) -> None:
        """Selective filters seek through an index instead of scanning every guest."""
        Hostess(tmp_path / "h.sqlite").close()
        where, params = parse(expr).guests_where()
        with sqlite3.connect(tmp_path / "h.sqlite") as db:
            sql = f"EXPLAIN QUERY PLAN SELECT g.id FROM guests g WHERE {where}"
            plan = " | ".join(row[3] for row in db.execute(sql, params))
        assert "SCAN g" not in plan and index in plan, plan


ERRORS = [
    ("owner=a ownr=b", 9, "ownr", "unknown field"),
    ("class&0xzz=1", 7, "0xzz", "class mask must be 0x-hex or decimal"),
    ("class&0xff=0x100", 12, "0x100", "bits outside the mask"),
    ("class=0x1ffffffffffffffff", 7, "0x1ffffffffffffffff", "wider than 64 bits"),
    ("class&0xff", 1, "class&0xff", "class&MASK=VALUE"),
    ("free used", 6, "used", "contradicts 'free' at column 1"),
    ("tag=gpu tag=[ab", 13, "[ab", r"unclosed \["),
    ("  gpu", 3, "gpu", "expected FIELD=VALUE"),
    ("owner=", 1, "owner=", "needs a value"),
    ("auth=yes", 6, "yes", "auth must be 0 or 1"),
    ("mechanism=kerberos", 11, "kerberos", "unknown auth mechanism"),
    ("terminal.direction=sideways", 20, "sideways", "direction must be one of"),
    ("fqdn=a\x01", 7, "'\\x01'", "non-printable"),
]


class TestErrors:
    @pytest.mark.parametrize(("expr", "column", "token", "reason"), ERRORS)
    def test_points_at_bad_token(self, expr: str, column: int, token: str, reason: str) -> None:
        """Each error carries the column and text of the bad token."""
        with pytest.raises(QueryError, match=reason) as info:
            parse(expr)
        assert (info.value.column, info.value.token) == (column, token)
        assert f"column {column}" in str(info.value)

    def test_caret(self) -> None:
        """caret() draws the expression and marks the token under it."""
        with pytest.raises(QueryError) as info:
            parse("owner=lab* ownr=x")
        assert info.value.caret() == "owner=lab* ownr=x\n           ^~~~"

    def test_limits(self) -> None:
        """Overlong expressions and too many terms are refused."""
        with pytest.raises(QueryError, match="longer than 4096"):
            parse("tag=a " * 1000)
        with pytest.raises(QueryError, match="more than 64 terms") as info:
            parse(" ".join(["tag=a"] * 65))
        assert info.value.column == 64 * 6 + 1

    @settings(max_examples=200)
    @given(
        st.text(
            alphabet=st.sampled_from(list("class&=0xfF1 tag*?[]^.freused-owner\t:é")), max_size=60
        )
    )
    def test_random_input_only_typed_errors(self, expr: str) -> None:
        """Any text compiles or raises QueryError with a column inside it."""
        try:
            parse(expr)
        except QueryError as exc:
            assert 1 <= exc.column <= len(expr) + 1


# -- semantics, checked against a plain-Python reference over a real registry ------------

OWNERS = ["lab-a", "lab-b", "ops", "alice"]
TAGS = ["gpu", "fast", "cold", "x86"]
HOSTS = ["a.lab", "b.lab", "c.example"]


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Hostess, list[Guest]]]:
    rng = random.Random(5)
    hostess = Hostess(Path(tmp_path_factory.mktemp("q")) / "hostess.sqlite")
    lease = Lease.heartbeat(3600)
    for index in range(80):
        flag = rng.random() < 0.5
        identity = Identity(
            rng.choice(HOSTS),
            f"srv{index}",
            rng.choice([0x1200, 0x12FF, 0x1300, 0x8000_0000_0000_1200, rng.getrandbits(64)]),
            rng.choice(OWNERS),
            flag,
            rng.choice(["token", "mtls"]) if flag else "none",
            uuid.UUID(int=rng.getrandbits(128)),
        )
        terminals = [
            TerminalSpec(f"t{k}", rng.choice(DIRECTIONS), 64) for k in range(rng.randint(0, 3))
        ]
        tags = rng.sample(TAGS, rng.randint(0, 3))
        hostess.register(identity, terminals, tags=tags, lease=lease)
    for index in range(0, 80, 3):
        with contextlib.suppress(InsufficientError):  # guests without terminals
            hostess.allocate(f"server=srv{index}", 1, holder="h", lease=lease)
    yield hostess, hostess.query("")
    hostess.close()


def reference(guest: Guest, terms: list[tuple[str, str]]) -> bool:
    ident = guest.identity
    fields = {
        "fqdn": ident.fqdn,
        "server": ident.servername,
        "owner": ident.owner,
        "mechanism": ident.auth_mechanism,
    }
    terminal_terms = []
    for field, value in terms:
        if field == "class":
            mask, want = value
            if ident.klass & mask != want:
                return False
        elif field == "auth":
            if ident.auth_flag != (value == "1"):
                return False
        elif field == "tag":
            if not any(fnmatch.fnmatchcase(t, value) for t in guest.tags):
                return False
        elif field in fields:
            if not fnmatch.fnmatchcase(fields[field], value):
                return False
        else:
            terminal_terms.append((field, value))
    if not terminal_terms:
        return True
    return any(
        all(
            (f == "terminal" and fnmatch.fnmatchcase(t.name, v))
            or (f == "terminal.direction" and t.direction == v)
            or (f == "flag" and t.in_use == (v == "used"))
            for f, v in terminal_terms
        )
        for t in guest.terminals
    )


def render(field: str, value: object) -> str:
    if field == "class":
        mask, want = value  # type: ignore[misc]
        return f"class&{mask:#x}={want:#x}"
    if field == "flag":
        return str(value)
    return f"{field}={value}"


terms = st.one_of(
    st.tuples(
        st.just("class"),
        st.sampled_from([(0xFF00, 0x1200), (0xFFFF, 0x1200), (1 << 63, 1 << 63), (0, 0)]),
    ),
    st.tuples(st.just("owner"), st.sampled_from(["lab*", "lab-?", "ops", "[ab]*", "*"])),
    st.tuples(st.just("fqdn"), st.sampled_from(["*.lab", "a.lab", "c.*"])),
    st.tuples(st.just("server"), st.sampled_from(["srv1*", "srv?", "srv42"])),
    st.tuples(st.just("tag"), st.sampled_from([*TAGS, "g*", "*a*"])),
    st.tuples(st.just("auth"), st.sampled_from(["0", "1"])),
    st.tuples(st.just("mechanism"), st.sampled_from(["none", "token", "m*"])),
    st.tuples(st.just("terminal"), st.sampled_from(["t0", "t[12]", "*"])),
    st.tuples(st.just("terminal.direction"), st.sampled_from(DIRECTIONS)),
    st.tuples(st.just("flag"), st.sampled_from(["free", "used"])),
)


class TestSelection:
    @settings(max_examples=100, deadline=None)
    @given(
        st.lists(terms, max_size=4).filter(lambda ts: len({v for f, v in ts if f == "flag"}) < 2)
    )
    def test_matches_reference(self, book: tuple[Hostess, list[Guest]], chosen: list) -> None:
        """Every generated expression selects exactly what the Python reference selects."""
        hostess, everyone = book
        expr = " ".join(render(f, v) for f, v in chosen)
        got = [g.identity.servername for g in hostess.query(expr)]
        want = [g.identity.servername for g in everyone if reference(g, chosen)]
        assert got == want, expr
        assert hostess.count(expr) == len(want)

    def test_terminal_terms_hold_on_one_terminal(self, book: tuple[Hostess, list[Guest]]) -> None:
        """terminal.direction and free must hold on the same terminal, not on two."""
        hostess, everyone = book
        got = {g.identity.servername for g in hostess.query("terminal.direction=input used")}
        want = {
            g.identity.servername
            for g in everyone
            if any(t.direction == "input" and t.in_use for t in g.terminals)
        }
        assert got == want

    def test_limit(self, book: tuple[Hostess, list[Guest]]) -> None:
        """limit keeps the oldest matches."""
        hostess, everyone = book
        assert hostess.query("", limit=3) == everyone[:3]
