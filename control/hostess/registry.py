"""The guest book itself: a SQLite registry in WAL mode.

:class:`Hostess` owns one connection. Every change runs in ``BEGIN IMMEDIATE`` (one writer
at a time across processes, waiting up to ``timeout``), and every refusal raises before the
transaction commits, so a raised :class:`~control.hostess.errors.HostessError` leaves the
database as it was. Reads run in a deferred transaction: one consistent snapshot, never
blocked by a writer (WAL).

``synchronous=NORMAL`` is enough here: in WAL mode a committed transaction survives the
death of any process; only a power cut may lose the last few.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
import uuid as uuidlib
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from control.hostess import allocate as _alloc
from control.hostess.errors import (
    ConflictError,
    IdentityError,
    InputError,
    NotFoundError,
    SchemaError,
)
from control.hostess.identity import Identity
from control.hostess.lease import Lease
from control.hostess.load import load_guests
from control.hostess.query import Query, parse, to_signed
from control.hostess.records import (
    Allocation,
    Connection,
    Connectome,
    Guest,
    Page,
    TerminalSpec,
    check_metadata,
    check_tags,
    check_terminals,
)
from control.hostess.schema import MIGRATIONS, Migration, migrate

MAX_LIMIT = 9_999_999
"""Largest ``limit`` a query takes: the HTTP API's bound, so Python, CLI and HTTP agree
(SQLite's LIMIT is a signed 64-bit integer: larger Python ints failed inside SQLite)."""



def _checked_limit(limit: int) -> int:
    if type(limit) is not int or not 1 <= limit <= MAX_LIMIT:
        raise InputError("limit", f"{limit!r} must be an int in [1, {MAX_LIMIT}]")
    return limit


def _cursor(after: str) -> int:
    """Return the row id a page cursor names (the decimal id of a page's last guest)."""
    if type(after) is not str or not re.fullmatch(r"[0-9]{1,18}", after):
        raise InputError("after", f"{after!r} is not a page cursor (a page's 'next' value)")
    return int(after)


def _as_query(expr: str | Query) -> Query:
    return expr if isinstance(expr, Query) else parse(expr)


def as_uuid(value: str | uuidlib.UUID) -> str:
    """Return a guest UUID in canonical text form.

    Raises:
        IdentityError: if ``value`` is not a UUID in the 8-4-4-4-12 form.

    """
    if isinstance(value, uuidlib.UUID):
        return str(value)
    if not isinstance(value, str):
        raise IdentityError("uuid", repr(value), "must be a string")
    placeholder = f"h:s:0:o:0:none:{value}"
    try:
        return str(Identity.parse(placeholder).uuid)
    except IdentityError as exc:
        raise IdentityError("uuid", value, exc.reason) from exc


class Hostess:
    """The guest book: who is here, what they offer, which terminals are in use.

    Args:
        path: the SQLite file; it and its directory are created on first use.
        timeout: seconds a writer waits for another process's transaction.
        migrations: schema steps (see :mod:`control.hostess.schema`).

    Raises:
        SchemaError: if ``path`` is not a registry this version can use.

    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float = 10.0,
        migrations: Mapping[int, Migration] = MIGRATIONS,
    ) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise SchemaError(f"cannot open registry {self.path}: {exc}") from exc
        try:
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute("PRAGMA foreign_keys = ON")
            migrate(self._db, migrations)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise SchemaError(f"{self.path} is not a Hostess registry: {exc}") from exc
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        """Close the connection (idempotent), refreshing the planner's statistics first."""
        with self._lock:
            try:
                self._db.execute("PRAGMA optimize")
            except sqlite3.ProgrammingError:
                return  # closed already
            except sqlite3.OperationalError:
                pass  # another process is writing: the statistics can wait, closing cannot
            self._db.close()

    def __enter__(self) -> Hostess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
            finally:
                self._db.execute("COMMIT")

    # -- guests ------------------------------------------------------------------------

    def register(
        self,
        identity: Identity | str,
        terminals: Sequence[TerminalSpec | Mapping[str, Any]] = (),
        *,
        tags: Collection[str] = (),
        metadata: Mapping[str, Any] | None = None,
        lease: Lease | None = None,
    ) -> Guest:
        """Register a guest (a server at its start).

        A guest with the same UUID, or the same fqdn and server name, is replaced only if
        its lease has lapsed (its process died, or its heartbeat expired).

        Args:
            identity: the guest's identity (or its string).
            terminals: what it offers.
            tags: labels to filter on.
            metadata: a free-form JSON object.
            lease: what keeps it registered; default: tied to this process.

        Returns:
            The guest as recorded.

        Raises:
            IdentityError, InputError: for malformed input.
            ConflictError: if a live guest has the same UUID or fqdn and server name.

        """
        ident = identity if isinstance(identity, Identity) else Identity.parse(identity)
        specs = check_terminals(terminals)
        tag_list = check_tags(tags)
        meta = check_metadata({} if metadata is None else metadata)
        if lease is None:
            lease = Lease.process()
        elif not isinstance(lease, Lease):
            raise InputError("lease", f"{lease!r} is not a Lease")
        now = time.time()
        with self._write() as db:
            for row in db.execute(
                "SELECT id, uuid, fqdn, servername, pid, pid_start, expires FROM guests "
                "WHERE uuid = ? OR (fqdn = ? AND servername = ?)",
                (str(ident.uuid), ident.fqdn, ident.servername),
            ).fetchall():
                if Lease(row[4], row[5], row[6]).alive(now):
                    raise ConflictError(
                        f"guest {row[2]}:{row[3]} ({row[1]}) is registered and alive"
                    )
                db.execute("DELETE FROM guests WHERE id = ?", (row[0],))
            guest_id = db.execute(
                "INSERT INTO guests (uuid, fqdn, servername, class, owner, auth_flag, "
                "auth_mechanism, pid, pid_start, expires, registered, metadata) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    str(ident.uuid),
                    ident.fqdn,
                    ident.servername,
                    to_signed(ident.klass),
                    ident.owner,
                    int(ident.auth_flag),
                    ident.auth_mechanism,
                    lease.pid,
                    lease.start,
                    lease.expires,
                    now,
                    meta,
                ),
            ).lastrowid
            db.executemany(
                "INSERT INTO terminals (guest_id, name, direction, message_size) "
                "VALUES (?, ?, ?, ?)",
                [(guest_id, s.name, s.direction, s.message_size) for s in specs],
            )
            db.executemany(
                "INSERT INTO tags (tag, guest_id) VALUES (?, ?)",
                [(tag, guest_id) for tag in tag_list],
            )
            return load_guests(db, f"g.id = {int(guest_id)}", ())[0]

    def leave(self, uuid: str | uuidlib.UUID) -> None:
        """Remove a guest (a server at its stop); its terminals' uses go with it.

        Raises:
            IdentityError: if ``uuid`` is malformed.
            NotFoundError: if no such guest is registered.

        """
        key = as_uuid(uuid)
        with self._write() as db:
            if db.execute("DELETE FROM guests WHERE uuid = ?", (key,)).rowcount == 0:
                raise NotFoundError(f"no guest with uuid {key}")

    def heartbeat(self, uuid: str | uuidlib.UUID, ttl: float) -> Lease:
        """Renew a heartbeat lease for ``ttl`` seconds from now; return the new lease.

        Raises:
            NotFoundError: if no such guest is registered.
            ConflictError: if the guest's lease is tied to a process, or already lapsed.

        """
        key = as_uuid(uuid)
        lease = Lease.heartbeat(ttl)
        with self._write() as db:
            row = db.execute("SELECT pid, expires FROM guests WHERE uuid = ?", (key,)).fetchone()
            if row is None:
                raise NotFoundError(f"no guest with uuid {key}")
            if row[0] is not None:
                raise ConflictError(f"guest {key} has a process lease; it needs no heartbeat")
            if row[1] <= time.time():
                raise ConflictError(f"guest {key}'s lease lapsed; register it again")
            db.execute("UPDATE guests SET expires = ? WHERE uuid = ?", (lease.expires, key))
        return lease

    def expire(self, now: float | None = None) -> dict[str, int]:
        """Remove guests and free uses whose lease lapsed (process gone, heartbeat late).

        Returns:
            How many ``guests`` and ``uses`` were removed.

        """
        now = time.time() if now is None else now
        with self._write() as db:
            return _alloc.expire(db, now)

    def get(self, uuid: str | uuidlib.UUID) -> Guest:
        """Return the guest with this UUID.

        Raises:
            NotFoundError: if there is none.

        """
        key = as_uuid(uuid)
        with self._read() as db:
            found = load_guests(db, "g.uuid = ?", (key,))
        if not found:
            raise NotFoundError(f"no guest with uuid {key}")
        return found[0]

    def query(self, expr: str | Query = "", *, limit: int | None = None) -> list[Guest]:
        """Return the guests matching a filter expression, oldest first.

        Args:
            expr: a filter (see :mod:`control.hostess.query`), or a compiled one.
            limit: at most this many guests.

        Raises:
            QueryError: if the expression does not parse.
            InputError: if ``limit`` is not an int in [1, :data:`MAX_LIMIT`].

        """
        query = _as_query(expr)
        where, params = query.guests_where()
        if limit is not None:
            where += f" ORDER BY g.id LIMIT {_checked_limit(limit)}"
        else:
            where += " ORDER BY g.id"
        with self._read() as db:
            return load_guests(db, where, params)

    def page(self, expr: str | Query = "", *, limit: int = 100, after: str | None = None) -> Page:
        """Return one page of the guests matching a filter, oldest first.

        Args:
            expr: a filter (see :mod:`control.hostess.query`), or a compiled one.
            limit: at most this many guests on the page.
            after: the ``next`` cursor of the previous page (None: the first page).

        Raises:
            QueryError: if the expression does not parse.
            InputError: a ``limit`` outside [1, :data:`MAX_LIMIT`] or an ``after`` that is
                not a cursor.

        """
        query = _as_query(expr)
        where, params = query.guests_where()
        where = f"({where})"
        if after is not None:
            where += f" AND g.id > {_cursor(after)}"
        where += f" ORDER BY g.id LIMIT {_checked_limit(limit) + 1}"  # one more: is there a next?
        ids: list[int] = []
        with self._read() as db:
            guests = load_guests(db, where, params, ids)
        if len(guests) <= limit:
            return Page(tuple(guests), None)
        return Page(tuple(guests[:limit]), str(ids[limit - 1]))

    def count(self, expr: str | Query = "") -> int:
        """Return how many guests match a filter expression.

        Raises:
            QueryError: if the expression does not parse.

        """
        where, params = _as_query(expr).guests_where()
        with self._read() as db:
            return int(
                db.execute(f"SELECT count(*) FROM guests g WHERE {where}", params).fetchone()[0]
            )

    # -- allocation and the connectome ------------------------------------------------

    def allocate(
        self,
        expr: str | Query,
        count: int = 1,
        *,
        holder: str,
        connection: str | None = None,
        whole_guests: bool = False,
        lease: Lease | None = None,
    ) -> Allocation:
        """Take ``count`` free terminals (or whole guests) matching a filter, atomically.

        Lapsed guests and holders are expired first, in the same transaction.

        Args:
            expr: which terminals (or guests) qualify.
            count: how many terminals (guests with ``whole_guests``) to take.
            holder: who takes them (a name recorded with each use).
            connection: the connection that will use them, if known now.
            whole_guests: take every terminal of ``count`` guests whose terminals are all free.
            lease: how long the holder keeps them; default: while this process lives.

        Returns:
            The allocation, with an ID to release it by.

        Raises:
            QueryError, InputError: for malformed input.
            InsufficientError: if fewer than ``count`` qualify (nothing is taken).

        """
        query = _as_query(expr)
        request = _alloc.Request.check(count, holder, connection, whole_guests)
        lease = Lease.process() if lease is None else lease
        if not isinstance(lease, Lease):
            raise InputError("lease", f"{lease!r} is not a Lease")
        with self._write() as db:
            return _alloc.allocate(db, query, request, lease, time.time())

    def release(self, allocation_id: str) -> int:
        """Free every terminal of an allocation; return how many.

        Raises:
            NotFoundError: if no such allocation holds anything.

        """
        with self._write() as db:
            return _alloc.release(db, allocation_id)

    def renew(self, allocation_id: str, ttl: float) -> Lease:
        """Extend a heartbeat-leased allocation for ``ttl`` seconds from now.

        Returns:
            The new lease.

        Raises:
            InputError: bad ID or ttl. NotFoundError: no such live allocation.
            ConflictError: the allocation is tied to a process.

        """
        lease = Lease.heartbeat(ttl)
        with self._write() as db:
            _alloc.renew(db, allocation_id, lease, time.time())
        return lease

    def allocations(self) -> list[Allocation]:
        """Return every live allocation, oldest first."""
        with self._read() as db:
            return _alloc.allocations(db)

    def record_connectome(
        self,
        connectome_id: str,
        version: int,
        connections: Iterable[Connection | Sequence[str] | Mapping[str, str]],
        *,
        lease: Lease | None = None,
    ) -> Connectome:
        """Record the kernel's connectome: which connection holds which terminal.

        Terminals of the listed connections are marked in use by them (binding allocations
        made for them); terminals of connections no longer listed are freed. A version older
        than the recorded one of the same ID is refused; the same version again replaces
        what it listed (a refresh), and changes nothing when it lists the same.

        Args:
            connectome_id: the connectome's ID.
            version: its version (increases with every change).
            connections: ``(conn_id, "server.terminal", "server.terminal")`` triples
                (``fqdn/server.terminal`` when a server name is not unique).
            lease: what keeps the kernel's uses alive; default: while this process lives.

        Returns:
            The connectome as Hostess now holds it.

        Raises:
            InputError: for malformed input; NotFoundError: for unknown terminals;
            ConflictError: for a stale version or a terminal taken by someone else.

        """
        conns = _alloc.check_connections(connections)
        _alloc.check_version(connectome_id, version)
        lease = Lease.process() if lease is None else lease
        if not isinstance(lease, Lease):
            raise InputError("lease", f"{lease!r} is not a Lease")
        with self._write() as db:
            _alloc.record_connectome(db, connectome_id, version, conns, lease, time.time())
            return _alloc.connectome(db)

    def connectome(self) -> Connectome:
        """Return the connectome as Hostess holds it (read back from the terminals)."""
        with self._read() as db:
            return _alloc.connectome(db)
