"""Paging through many guests: by key, so arrivals and departures never shift a page.

The same pages from Python (:meth:`Hostess.page`), the CLI (``hostess list --after``) and
HTTP (``GET /api/hostess/guests?after=``); bad cursors are typed errors naming ``after``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pykernel.cli
from control.hostess import Hostess, InputError, Lease, TerminalSpec
from control.hostess.api import PREFIX, handle

LEASE = Lease.heartbeat(3600)


def add(book: Hostess, count: int, tag: str = "pool") -> list[str]:
    """Register ``count`` guests; return their uuids in registration order."""
    made = []
    for _ in range(count):
        uid = str(uuid.uuid4())
        book.register(
            f"host.lab:{tag}{uid[:8]}:1200:lab:0:none:{uid}",
            [TerminalSpec("t0", "output", 64)],
            tags=[tag],
            lease=LEASE,
        )
        made.append(uid)
    return made


def walk(book: Hostess, expr: str = "", limit: int = 100) -> list[list[str]]:
    """Every page's uuids, following the cursors to the end."""
    pages, after = [], None
    while True:
        page = book.page(expr, limit=limit, after=after)
        pages.append([str(g.identity.uuid) for g in page.guests])
        if page.next is None:
            return pages
        after = page.next


def follow(fetch: Callable[[str | None], dict]) -> list[str]:
    """Every guest's uuid over the pages ``fetch(after)`` returns as JSON, to the end."""
    got: list[str] = []
    after = None
    while True:
        data = fetch(after)
        got += [g["uuid"] for g in data["guests"]]
        if data["next"] is None:
            return got
        after = data["next"]


@pytest.fixture
def book(tmp_path: Path) -> Iterator[Hostess]:
    with Hostess(tmp_path / "hostess.sqlite") as hostess:
        yield hostess


class TestPages:
    def test_pages_cover_every_guest_once_in_order(self, book: Hostess) -> None:
        """250 guests, 100 a page: 100, 100, 50, the last without a next cursor."""
        uids = add(book, 250)
        pages = walk(book, limit=100)
        assert [len(p) for p in pages] == [100, 100, 50]
        assert [u for p in pages for u in p] == uids

    def test_an_exact_multiple_ends_without_an_empty_page(self, book: Hostess) -> None:
        """200 guests in pages of 100: two pages, and the second says it is the last."""
        add(book, 200)
        assert [len(p) for p in walk(book, limit=100)] == [100, 100]

    def test_the_filter_applies_to_every_page(self, book: Hostess) -> None:
        """Pages of a filter hold only its guests, across interleaved registrations."""
        gpus = []
        for _ in range(30):
            gpus += add(book, 1, "gpu")
            add(book, 2, "cpu")
        assert [u for p in walk(book, "tag=gpu", limit=7) for u in p] == gpus

    def test_query_and_one_big_page_agree(self, book: Hostess) -> None:
        """The unpaged query and a page as large as the book list the same guests."""
        add(book, 40)
        page = book.page(limit=1000)
        assert page.next is None and list(page.guests) == book.query()

    @settings(
        max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        limit=st.integers(1, 30),
        churn=st.lists(st.tuples(st.integers(0, 59), st.integers(0, 3)), max_size=8),
    )
    def test_guests_present_throughout_are_seen_exactly_once(
        self, tmp_path_factory: pytest.TempPathFactory, limit: int, churn: list[tuple[int, int]]
    ) -> None:
        """Guests leave and arrive between pages; those present throughout appear once."""
        path = tmp_path_factory.mktemp("paging") / "hostess.sqlite"
        with Hostess(path) as book:
            uids = add(book, 60)
            left: set[str] = set()
            seen: list[str] = []
            after = None
            steps = iter(churn)
            while True:
                page = book.page(limit=limit, after=after)
                seen += [str(g.identity.uuid) for g in page.guests]
                step = next(steps, None)
                if step is not None:  # between pages: one leaves, some arrive
                    gone = uids[step[0]]
                    if gone not in left:
                        book.leave(gone)
                        left.add(gone)
                    add(book, step[1], "late")
                if page.next is None:
                    break
                after = page.next
            assert len(seen) == len(set(seen))
            assert set(uids) - left <= set(seen)


class TestBadInput:
    @pytest.mark.parametrize("after", ["", "x", "-1", "1.5", "9" * 19, " 1"])
    def test_a_bad_cursor_names_after(self, book: Hostess, after: str) -> None:
        """Anything but a cursor from a page is an InputError on 'after'."""
        with pytest.raises(InputError, match=r"after: .* is not a page cursor"):
            book.page(after=after)

    @pytest.mark.parametrize("limit", [0, -1, 10_000_000, True])
    def test_a_bad_limit_names_limit(self, book: Hostess, limit: int) -> None:
        """The limit is bounded as for query()."""
        with pytest.raises(InputError, match="limit: "):
            book.page(limit=limit)


class TestCliAndHttp:
    def test_cli_pages_with_after(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """`hostess list --limit N --after C` pages like Python; text output names the cursor."""
        path = tmp_path / "hostess.sqlite"
        with Hostess(path) as book:
            uids = add(book, 5)

        def fetch(after: str | None) -> dict:
            extra = ["--after", after] if after else []
            argv = ["hostess", "list", "--db", str(path), "--json", "--limit", "2", *extra]
            assert pykernel.cli.main(argv) == 0
            return json.loads(capsys.readouterr().out)

        assert follow(fetch) == uids
        assert pykernel.cli.main(["hostess", "list", "--db", str(path), "--limit", "2"]) == 0
        assert "more: --after " in capsys.readouterr().out
        assert pykernel.cli.main(["hostess", "list", "--db", str(path), "--after", "nope"]) == 1
        assert "after: 'nope' is not a page cursor" in capsys.readouterr().err

    def test_http_pages_with_after(self, book: Hostess) -> None:
        """GET /guests?limit=&after= pages; a bad cursor is a 400 naming query.after."""
        uids = add(book, 5)

        def fetch(after: str | None) -> dict:
            query = {"limit": "2"} | ({"after": after} if after else {})
            status, payload = handle(book, "GET", PREFIX + "/guests", query, b"")
            assert status == 200
            return payload

        assert follow(fetch) == uids
        status, payload = handle(book, "GET", PREFIX + "/guests", {"after": "x"}, b"")
        assert status == 400 and "query.after" in payload["error"]["message"]
