"""Spec of the Hostess registry: SQLite file, schema versions, guests, leases, bad input."""

from __future__ import annotations

import os
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
    HostessError,
    Identity,
    IdentityError,
    InputError,
    Lease,
    NotFoundError,
    SchemaError,
    TerminalSpec,
)
from control.hostess.schema import MIGRATIONS, SCHEMA_VERSION, migrate


def identity(server: str = "cam0", host: str = "host.lab", uid: str | None = None) -> str:
    return f"{host}:{server}:1200:lab-a:0:none:{uid or uuid.uuid4()}"


TERMINALS = [TerminalSpec("frames", "multiplexer", 4096), TerminalSpec("ctl", "input", 64)]


@pytest.fixture
def book(tmp_path: Path) -> Iterator[Hostess]:
    with Hostess(tmp_path / "hostess.sqlite") as hostess:
        yield hostess


def dump(hostess: Hostess) -> list[str]:
    """Every row of the database, to prove a refusal changed nothing."""
    with sqlite3.connect(hostess.path) as db:
        return list(db.iterdump())


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


class TestFile:
    def test_created_on_first_use(self, tmp_path: Path) -> None:
        """The file and its directories are created, in WAL mode, at the current version."""
        path = tmp_path / "a" / "b" / "hostess.sqlite"
        Hostess(path).close()
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION

    def test_reopen_keeps_guests(self, tmp_path: Path) -> None:
        """What one Hostess committed, the next one opening the file sees."""
        path = tmp_path / "h.sqlite"
        with Hostess(path) as first:
            guest = first.register(identity(), TERMINALS, lease=Lease.heartbeat(60))
        with Hostess(path) as second:
            assert second.get(guest.identity.uuid) == guest

    def test_newer_schema_refused(self, tmp_path: Path) -> None:
        """A database from a newer Hostess is refused, not touched."""
        path = tmp_path / "h.sqlite"
        with sqlite3.connect(path) as db:
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        with pytest.raises(SchemaError, match="newer than this Hostess"):
            Hostess(path)

    def test_not_a_database(self, tmp_path: Path) -> None:
        """A file that is not SQLite is a typed error naming it."""
        path = tmp_path / "h.sqlite"
        path.write_bytes(b"this is not a database" * 100)
        with pytest.raises(SchemaError, match=r"h\.sqlite"):
            Hostess(path)

    def test_close_while_another_process_writes(self, tmp_path: Path) -> None:
        """Closing never fails because another connection holds the write lock."""
        path = tmp_path / "h.sqlite"
        hostess = Hostess(path)
        for n in range(50):  # enough rows that PRAGMA optimize wants to ANALYZE
            hostess.register(identity(f"cam{n}"), TERMINALS, tags={"gpu"},
                             lease=Lease.heartbeat(60))
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN EXCLUSIVE")
            hostess.close()
        finally:
            other.execute("ROLLBACK")
            other.close()
        with pytest.raises(sqlite3.ProgrammingError):
            hostess._db.execute("SELECT 1")  # really closed
        hostess.close()  # and idempotent

    def test_migration_hook(self, tmp_path: Path) -> None:
        """Steps run in order from the stored version; a failing step rolls back."""
        path = tmp_path / "h.sqlite"
        Hostess(path).close()
        db = sqlite3.connect(path, isolation_level=None)

        def add_column(conn: sqlite3.Connection) -> None:
            conn.execute("ALTER TABLE guests ADD COLUMN site TEXT")

        def broken(conn: sqlite3.Connection) -> None:
            conn.execute("ALTER TABLE guests ADD COLUMN rack TEXT")
            raise SchemaError("step 2 failed")

        steps = {**MIGRATIONS, SCHEMA_VERSION: add_column, SCHEMA_VERSION + 1: broken}
        with pytest.raises(SchemaError, match="step 2 failed"):
            migrate(db, steps, target=SCHEMA_VERSION + 2)
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        columns = {row[1] for row in db.execute("PRAGMA table_info(guests)")}
        assert "site" not in columns and "rack" not in columns
        assert migrate(db, steps, target=SCHEMA_VERSION + 1) == SCHEMA_VERSION
        assert "site" in {row[1] for row in db.execute("PRAGMA table_info(guests)")}
        with pytest.raises(SchemaError, match="no migration from registry schema version"):
            migrate(db, {}, target=SCHEMA_VERSION + 3)
        db.close()


class TestGuests:
    def test_register_get_leave(self, book: Hostess) -> None:
        """A registered guest reads back whole, and is gone after it leaves."""
        guest = book.register(
            identity(), TERMINALS, tags=["gpu", "fast", "gpu"], metadata={"rack": 4}
        )
        assert guest.tags == ("fast", "gpu")
        assert [t.name for t in guest.terminals] == ["frames", "ctl"]
        assert not any(t.in_use for t in guest.terminals)
        assert guest.lease == Lease.process()
        assert book.get(str(guest.identity.uuid)) == guest
        assert guest.to_dict()["class"] == "0x1200"
        book.leave(guest.identity.uuid)
        with pytest.raises(NotFoundError, match="no guest with uuid"):
            book.get(guest.identity.uuid)
        with pytest.raises(NotFoundError, match="no guest with uuid"):
            book.leave(guest.identity.uuid)

    def test_live_duplicate_refused(self, book: Hostess) -> None:
        """The same UUID, or the same host and server name, cannot register twice while alive."""
        first = book.register(identity(), TERMINALS)
        before = dump(book)
        with pytest.raises(ConflictError, match="registered and alive"):
            book.register(first.identity, TERMINALS)
        with pytest.raises(ConflictError, match=r"host\.lab:cam0"):
            book.register(identity(), TERMINALS)
        assert dump(book) == before

    def test_dead_duplicate_replaced(self, book: Hostess, sleeper: subprocess.Popen[bytes]) -> None:
        """A guest whose process died is replaced by a new registration of the same server."""
        old = book.register(identity(), TERMINALS, lease=Lease.process(sleeper.pid))
        sleeper.kill()
        sleeper.wait()
        new = book.register(identity(), TERMINALS)
        assert [g.identity for g in book.query("")] == [new.identity]
        assert new.identity.uuid != old.identity.uuid

    def test_heartbeat(self, book: Hostess) -> None:
        """A heartbeat lease is renewed by heartbeat() and expires when late."""
        guest = book.register(identity(), TERMINALS, lease=Lease.heartbeat(30))
        renewed = book.heartbeat(guest.identity.uuid, 60)
        assert renewed.expires is not None and renewed.expires > time.time() + 50
        assert book.expire(now=time.time() + 30) == {"guests": 0, "uses": 0}
        assert book.expire(now=time.time() + 61) == {"guests": 1, "uses": 0}
        with pytest.raises(NotFoundError):
            book.heartbeat(guest.identity.uuid, 60)

    def test_heartbeat_on_process_lease(self, book: Hostess) -> None:
        """A process lease needs no heartbeat: asking for one is a conflict."""
        guest = book.register(identity(), TERMINALS)
        with pytest.raises(ConflictError, match="process lease"):
            book.heartbeat(guest.identity.uuid, 10)

    def test_dead_process_expired(self, book: Hostess) -> None:
        """A guest registered by a real process is expired once that process is gone."""
        script = (
            "import sys; from control.hostess import Hostess, TerminalSpec\n"
            "h = Hostess(sys.argv[1])\n"
            "h.register(sys.argv[2], [TerminalSpec('out', 'output', 8)])\n"
        )
        uid = str(uuid.uuid4())
        subprocess.run(
            [sys.executable, "-c", script, str(book.path), identity("worker", uid=uid)],
            check=True,
            cwd=Path(__file__).parent.parent,
        )
        assert book.get(uid).identity.servername == "worker"
        assert book.expire() == {"guests": 1, "uses": 0}
        assert book.query("") == []

    def test_recycled_pid_is_not_alive(self) -> None:
        """A lease remembers the process start time, so a reused pid does not count."""
        lease = Lease.process()
        assert lease.alive()
        assert not Lease(pid=lease.pid, start=(lease.start or 0) + 1).alive()
        with pytest.raises(InputError, match="no running process"):
            Lease.process(2**22 + 12345)


BAD_REGISTRATIONS = [
    ({"identity": "h:s:1:o:0:none"}, IdentityError, "6 fields"),
    ({"terminals": [TerminalSpec("bad name", "input", 8)]}, InputError, r"terminals\[0\]\.name"),
    ({"terminals": [TerminalSpec("a", "sideways", 8)]}, InputError, "direction"),
    ({"terminals": [TerminalSpec("a", "input", 0)]}, InputError, "message_size"),
    ({"terminals": [TerminalSpec("a", "input", 8)] * 2}, InputError, "declared twice"),
    ({"terminals": [{"name": "a", "direction": "input"}]}, InputError, "needs exactly"),
    ({"tags": ["ok", "not ok"]}, InputError, r"tags\[1\]"),
    ({"tags": ["gl*b"]}, InputError, "no glob"),
    ({"metadata": {"x": float("nan")}}, InputError, "metadata"),
    ({"metadata": {"x": "y" * 70000}}, InputError, "at most 65536"),
    ({"metadata": ["list"]}, InputError, "must be an object"),
    ({"lease": "forever"}, InputError, "lease"),
]


class TestBadInput:
    @pytest.mark.parametrize(("change", "error", "match"), BAD_REGISTRATIONS)
    def test_refused_and_nothing_changes(
        self, book: Hostess, change: dict, error: type[HostessError], match: str
    ) -> None:
        """Each malformed registration is a typed error and the database is unchanged."""
        book.register(identity("existing"), TERMINALS)
        before = dump(book)
        args = {"identity": identity(), "terminals": TERMINALS, **change}
        with pytest.raises(error, match=match):
            book.register(args.pop("identity"), args.pop("terminals"), **args)
        assert dump(book) == before

    def test_bad_uuid_lookups(self, book: Hostess) -> None:
        """Looking up a malformed UUID names the field."""
        with pytest.raises(IdentityError, match="uuid"):
            book.get("nope")
        with pytest.raises(IdentityError, match="uuid"):
            book.leave(42)  # type: ignore[arg-type]

    def test_top_class_bit_survives_storage(self, book: Hostess) -> None:
        """A 64-bit class with the top bit set survives storage as a signed integer."""
        text = f"h.lab:top:ffffffffffffffff:o:1:mtls:{uuid.uuid4()}"
        guest = book.register(text, [])
        assert book.get(guest.identity.uuid).identity == Identity.parse(text)
        assert book.count("class&0x8000000000000000=0x8000000000000000") == 1

    def test_wrong_types_never_crash(self, book: Hostess) -> None:
        """Wrong Python types are typed errors too, not TypeErrors."""
        for bad in (None, 5, b"x"):
            with pytest.raises(HostessError):
                book.register(identity(), bad)  # type: ignore[arg-type]
            with pytest.raises(HostessError):
                book.register(identity(), TERMINALS, tags=bad)  # type: ignore[arg-type]
        assert book.query("") == []
        assert os.path.exists(book.path)
