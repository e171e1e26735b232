"""Hostess over 100,000 guests: queries (target < 10 ms), count, allocate, register.

Run: ``pytest benches/test_bench_hostess.py``. The registry is filled in bulk with the rows
``Hostess.register`` would write (200,000 terminals, 10% in use, 0-3 of 42 tags each, classes
spread over 256 families in byte 1), then ``ANALYZE``d as ``Hostess.close`` leaves it.
Queries return the first page (``limit=100``), as the HTTP route does by default.
"""

from __future__ import annotations

import random
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from control.hostess import Hostess, Lease
from control.hostess.query import to_signed

GUESTS = 100_000
TAGS = [f"t{k}" for k in range(40)] + ["gpu", "fast"]


def fill(path: Path, guests: int = GUESTS, seed: int = 5) -> None:
    """Write ``guests`` guests with two terminals each straight into a fresh registry."""
    Hostess(path).close()
    rng = random.Random(seed)
    now = time.time()
    expires = now + 86400
    guest_rows, terminal_rows, use_rows, tag_rows = [], [], [], []
    for i in range(guests):
        klass = (rng.getrandbits(48) << 16) | (rng.randrange(256) << 8) | rng.randrange(256)
        gid = i + 1
        guest_rows.append(
            (
                gid,
                str(uuid.UUID(int=rng.getrandbits(128))),
                f"h{i % 500}.lab",
                f"s{i}",
                to_signed(klass),
                f"lab{rng.randrange(50)}",
                0,
                "none",
                expires,
                now,
                "{}",
            )
        )
        for k, direction in enumerate(("output", "input")):
            tid = 2 * i + k + 1
            terminal_rows.append((tid, gid, f"p{k}", direction, 4096))
            if rng.random() < 0.1:
                use_rows.append((tid, f"a{tid}", "bench", expires, now))
        tag_rows.extend((tag, gid) for tag in rng.sample(TAGS, rng.randint(0, 3)))
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO guests (id, uuid, fqdn, servername, class, owner, auth_flag, "
            "auth_mechanism, expires, registered, metadata) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            guest_rows,
        )
        db.executemany(
            "INSERT INTO terminals (id, guest_id, name, direction, message_size) "
            "VALUES (?,?,?,?,?)",
            terminal_rows,
        )
        db.executemany(
            "INSERT INTO uses (terminal_id, allocation, holder, expires, since) VALUES (?,?,?,?,?)",
            use_rows,
        )
        db.executemany("INSERT INTO tags (tag, guest_id) VALUES (?,?)", tag_rows)
        db.execute("ANALYZE")


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostess]:
    path = tmp_path_factory.mktemp("hostess") / "hostess.sqlite"
    fill(path)
    with Hostess(path) as hostess:
        assert hostess.count() == GUESTS
        yield hostess


QUERIES = [
    "class&0xff00=0x1200",
    "class&0xff00=0x1200 terminal.direction=input free",
    "owner=lab7",
    "owner=lab1*",
    "fqdn=h12.lab",
    "server=s99999",
    "tag=gpu tag=fast",
    "tag=gpu terminal.direction=input free",
    "class&0xff00=0x1200 owner=lab1* tag=gpu terminal.direction=input free",
    "used",
    "",
]


@pytest.mark.parametrize("expr", QUERIES)
def test_query_first_page(record_machine, book: Hostess, expr: str) -> None:  # type: ignore[no-untyped-def]
    record_machine.extra_info["guests"] = GUESTS
    found = record_machine(book.query, expr, limit=100)
    record_machine.extra_info["returned"] = len(found)


@pytest.mark.parametrize("expr", ["class&0xff00=0x1200", "tag=gpu tag=fast", "owner=lab7"])
def test_count(record_machine, book: Hostess, expr: str) -> None:  # type: ignore[no-untyped-def]
    record_machine.extra_info["matches"] = record_machine(book.count, expr)


def test_allocate_release(record_machine, book: Hostess) -> None:  # type: ignore[no-untyped-def]
    lease = Lease.heartbeat(600)

    def cycle() -> None:
        book.release(book.allocate("class&0xff00=0x1200 free", 4, holder="b", lease=lease).id)

    record_machine(cycle)


def test_register_leave(record_machine, book: Hostess) -> None:  # type: ignore[no-untyped-def]
    from control.hostess import TerminalSpec

    specs = [TerminalSpec("frames", "output", 4096), TerminalSpec("ctl", "input", 64)]
    lease = Lease.heartbeat(600)

    def cycle() -> None:
        guest = book.register(
            f"bench.lab:new:1200:lab:0:none:{uuid.uuid4()}", specs, tags=["gpu"], lease=lease
        )
        book.leave(guest.identity.uuid)

    record_machine(cycle)
