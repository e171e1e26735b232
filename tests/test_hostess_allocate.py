"""Spec of Hostess allocation: atomic, never double, survives killed allocators."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from control.hostess import (
    ConflictError,
    Hostess,
    InputError,
    InsufficientError,
    Lease,
    NotFoundError,
    QueryError,
    TerminalSpec,
)

ROOT = Path(__file__).resolve().parent.parent
LEASE = Lease.heartbeat(3600)


def add_guests(book: Hostess, count: int, terminals: int = 3, tag: str = "pool") -> None:
    for index in range(count):
        specs = [
            TerminalSpec(f"t{k}", "input" if k % 2 else "output", 64) for k in range(terminals)
        ]
        book.register(
            f"host.lab:{tag}{index}:1200:lab:0:none:{uuid.uuid4()}", specs, tags=[tag], lease=LEASE
        )


def dump(book: Hostess) -> list[str]:
    with sqlite3.connect(book.path) as db:
        return list(db.iterdump())


def spawn(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def book(tmp_path: Path) -> Iterator[Hostess]:
    with Hostess(tmp_path / "hostess.sqlite") as hostess:
        yield hostess


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


WORKER = """
import json, sys
from control.hostess import Hostess, InsufficientError, Lease
if sys.argv[4:] == ["announce"]:
    # Opening the registry is the first call to take the write lock (its schema check
    # runs in BEGIN IMMEDIATE): from here on the worker queues behind any holder.
    print("taking the lock", flush=True)
book = Hostess(sys.argv[1], timeout=30)
lease = Lease.heartbeat(3600)
whole = sys.argv[3] == "guests"
while True:
    try:
        taken = book.allocate("tag=pool free", 1, holder=sys.argv[2], lease=lease,
                              whole_guests=whole)
    except InsufficientError:
        break
    print(json.dumps([taken.id, list(taken.terminals)]), flush=True)
"""

STALLER = """
import sys, time
import control.hostess.allocate as allocate
from control.hostess import Hostess, Lease
real = allocate.allocate
def stall(*args, **kwargs):
    taken = real(*args, **kwargs)
    print("inserted", flush=True)  # rows written, transaction not yet committed
    time.sleep(60)
    return taken
allocate.allocate = stall
Hostess(sys.argv[1]).allocate("tag=pool free", 5, holder="victim", lease=Lease.heartbeat(3600))
"""


class TestAllocate:
    def test_allocate_and_release(self, book: Hostess) -> None:
        """Allocated terminals are in use with holder, time and connection, until released."""
        add_guests(book, 2)
        taken = book.allocate(
            "tag=pool terminal.direction=input free",
            2,
            holder="alice",
            connection="c-1",
            lease=LEASE,
        )
        assert taken.terminals == ("host.lab/pool0.t1", "host.lab/pool1.t1")
        assert book.count("used") == 2
        use = book.query("server=pool0")[0].terminals[1].uses[0]
        assert (use.holder, use.connection, use.allocation) == ("alice", "c-1", taken.id)
        assert abs(use.since - time.time()) < 60
        assert book.allocations() == [taken]
        assert book.release(taken.id) == 2
        assert book.count("used") == 0
        with pytest.raises(NotFoundError, match="holds any terminal"):
            book.release(taken.id)

    def test_insufficient_takes_nothing(self, book: Hostess) -> None:
        """Asking for more than match is refused and nothing is taken."""
        add_guests(book, 2)
        book.allocate("server=pool0", 1, holder="alice", lease=LEASE)
        before = dump(book)
        with pytest.raises(InsufficientError, match="5 free terminals match 'free', 6 asked"):
            book.allocate("free", 6, holder="bob", lease=LEASE)
        assert dump(book) == before

    def test_whole_guests(self, book: Hostess) -> None:
        """Whole-guest allocation takes every terminal of guests that are entirely free."""
        add_guests(book, 3)
        book.allocate("server=pool0", 1, holder="alice", lease=LEASE)
        taken = book.allocate("tag=pool", 2, holder="bob", whole_guests=True, lease=LEASE)
        assert {t.rsplit(".", 1)[0] for t in taken.terminals} == {
            "host.lab/pool1",
            "host.lab/pool2",
        }
        assert len(taken.terminals) == 6
        with pytest.raises(InsufficientError, match="guests with every terminal free"):
            book.allocate("tag=pool", 1, holder="carol", whole_guests=True, lease=LEASE)

    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            ({"count": 0}, InputError, "count"),
            ({"count": True}, InputError, "count"),
            ({"holder": "two words"}, InputError, "holder"),
            ({"holder": ""}, InputError, "holder"),
            ({"connection": "c 1"}, InputError, "connection"),
            ({"whole_guests": "yes"}, InputError, "whole_guests"),
            ({"expr": "tag=[x"}, QueryError, "unclosed"),
            ({"lease": 5}, InputError, "lease"),
        ],
    )
    def test_bad_requests_change_nothing(
        self, book: Hostess, kwargs: dict, error: type[Exception], match: str
    ) -> None:
        """Malformed requests are typed errors and leave the database as it was."""
        add_guests(book, 1)
        before = dump(book)
        args = {"expr": "free", "count": 1, "holder": "alice", "lease": LEASE, **kwargs}
        with pytest.raises(error, match=match):
            book.allocate(args.pop("expr"), args.pop("count"), **args)
        assert dump(book) == before
        with pytest.raises(InputError, match="allocation"):
            book.release("no such id")


class TestLeases:
    def test_holder_death_frees(self, book: Hostess) -> None:
        """Terminals held by a process are freed when that process is gone."""
        add_guests(book, 1)
        script = (
            "import sys; from control.hostess import Hostess\n"
            "print(Hostess(sys.argv[1]).allocate('free', 2, holder='short').id)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", script, str(book.path)],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        )
        assert [a.id for a in book.allocations()] == [done.stdout.strip()]
        # The next allocation expires the dead holder first, in its own transaction.
        taken = book.allocate("free", 3, holder="next", lease=LEASE)
        assert len(taken.terminals) == 3
        assert [a.holder for a in book.allocations()] == ["next"]

    def test_heartbeat_holder_expires(self, book: Hostess) -> None:
        """A heartbeat-leased allocation lapses at its deadline."""
        add_guests(book, 1)
        book.allocate("free", 1, holder="brief", lease=Lease.heartbeat(5))
        assert book.expire(now=time.time() + 1) == {"guests": 0, "uses": 0}
        assert book.expire(now=time.time() + 6) == {"guests": 0, "uses": 1}
        assert book.count("used") == 0

    def test_renew(self, book: Hostess) -> None:
        """A heartbeat allocation lives on while renewed; a process one needs no renewal."""
        add_guests(book, 1)
        brief = book.allocate("free", 1, holder="brief", lease=Lease.heartbeat(5))
        lease = book.renew(brief.id, 60)
        assert lease.expires is not None and lease.expires > time.time() + 50
        assert book.expire(now=time.time() + 30) == {"guests": 0, "uses": 0}
        pinned = book.allocate("free", 1, holder="pinned")
        before = dump(book)
        with pytest.raises(ConflictError, match="process lease"):
            book.renew(pinned.id, 60)
        with pytest.raises(NotFoundError, match="or it lapsed"):
            book.renew("a-missing-id", 60)
        with pytest.raises(InputError, match=r"lease\.ttl"):
            book.renew(brief.id, 0)
        assert dump(book) == before
        book.expire(now=time.time() + 61)
        with pytest.raises(NotFoundError):
            book.renew(brief.id, 60)

    def test_guest_leaving_frees_its_uses(self, book: Hostess) -> None:
        """When a guest leaves, its terminals' uses go with it."""
        add_guests(book, 2)
        taken = book.allocate("tag=pool", 1, holder="a", whole_guests=True, lease=LEASE)
        book.leave(book.query("server=pool0")[0].identity.uuid)
        assert taken.id not in [a.id for a in book.allocations()]


class TestConcurrency:
    @pytest.mark.parametrize("mode", ["terminals", "guests"])
    def test_no_double_allocation_with_a_killed_allocator(
        self, book: Hostess, procs: list[subprocess.Popen[str]], mode: str
    ) -> None:
        """Four processes drain the pool while one is SIGKILLed mid-transaction.

        Every terminal goes to exactly one worker, every allocation a worker saw committed is
        in the database, and the killed one left nothing behind.
        """
        add_guests(book, 40)  # 120 terminals
        victim = spawn(STALLER, str(book.path))
        procs.append(victim)
        assert victim.stdout is not None
        assert victim.stdout.readline().strip() == "inserted"  # it holds the write lock now
        workers = [spawn(WORKER, str(book.path), f"w{i}", mode, "announce") for i in range(4)]
        procs.extend(workers)
        for worker in workers:  # each is about to queue up behind the victim's lock
            assert worker.stdout is not None and worker.stderr is not None
            line = worker.stdout.readline()
            assert line.strip() == "taking the lock", (line, worker.stderr.read())
        os.kill(victim.pid, signal.SIGKILL)
        assert victim.wait(10) == -signal.SIGKILL
        seen: dict[str, str] = {}
        allocations: set[str] = set()
        for index, worker in enumerate(workers):
            # Read on through the buffered reader that read the first line (communicate()
            # would skip whatever readline() had already buffered).
            assert worker.stdout is not None
            out = worker.stdout.read()
            assert worker.wait(60) == 0, worker.communicate()[1]
            for line in out.splitlines():
                allocation, terminals = json.loads(line)
                allocations.add(allocation)
                for terminal in terminals:
                    assert terminal not in seen, (
                        f"{terminal} given to w{index} and {seen[terminal]}"
                    )
                    seen[terminal] = f"w{index}"
        assert len(seen) == 120
        assert {a.id for a in book.allocations()} == allocations
        assert "victim" not in {a.holder for a in book.allocations()}
        with sqlite3.connect(book.path) as db:
            doubles = db.execute(
                "SELECT terminal_id FROM uses GROUP BY terminal_id HAVING count(*) > 1"
            ).fetchall()
            assert doubles == []
            counted = "SELECT count(*) FROM uses u WHERE u.terminal_id = t.id"
            drift = f"SELECT count(*) FROM terminals t WHERE t.uses != ({counted})"
            assert db.execute(drift).fetchone()[0] == 0  # the trigger-kept counts agree
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def test_killed_at_random_moments(
        self, book: Hostess, procs: list[subprocess.Popen[str]]
    ) -> None:
        """Workers SIGKILLed while allocating never lose a reported allocation nor share one."""
        add_guests(book, 200)  # 600 terminals: far more than the workers take before the kills
        workers = [spawn(WORKER, str(book.path), f"w{i}", "terminals") for i in range(3)]
        procs.extend(workers)
        lines: list[str] = []
        for victim, after in ((workers[0], 3), (workers[1], 6)):
            assert victim.stdout is not None
            lines += [victim.stdout.readline() for _ in range(after)]  # it is mid-run now
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait(10)
            # Read the rest through the same buffered reader (communicate() would skip
            # whatever readline() had already buffered).
            lines += victim.stdout.read().splitlines()
        lines += workers[2].communicate(timeout=60)[0].splitlines()
        reported: dict[str, str] = {}
        for line in lines:
            if line.strip().endswith("]"):  # a line cut short by the kill is skipped
                allocation, (terminal,) = json.loads(line)
                assert terminal not in reported.values()
                reported[allocation] = terminal
        # The pool is shared: on a busy machine the second victim may have emptied it and
        # exited before its kill lands; the first is always killed mid-run (597+ left).
        assert workers[0].returncode == -signal.SIGKILL
        assert workers[1].returncode in (-signal.SIGKILL, 0)
        assert workers[2].returncode == 0
        held = {a.id: a.terminals[0] for a in book.allocations()}
        assert reported.items() <= held.items()
        assert len(set(held.values())) == len(held)
