"""Allocation, release, expiry and the connectome exchange, inside one write transaction.

Every function here runs on a connection that is already inside ``BEGIN IMMEDIATE`` (see
:class:`~control.hostess.registry.Hostess`), so SQLite lets one process at a time through:
two allocators never see the same terminal free, and a process killed mid-allocation leaves
no trace (its transaction never committed). Refusals raise before any write, or the caller
rolls back.

A terminal is in use while it has a row in ``uses``. ``input`` and ``output`` terminals carry
one connection; a ``multiplexer`` may be the source of many and a ``combiner`` the
destination of many.
"""

from __future__ import annotations

import re
import sqlite3
import uuid as uuidlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from control.hostess.errors import ConflictError, InputError, InsufficientError, NotFoundError
from control.hostess.lease import Lease
from control.hostess.query import Query
from control.hostess.records import Allocation, Connection, Connectome
from control.manifest import SERVERNAME_RE, TERMINAL_NAME_RE
from pykernel.liveness import process_start

MAX_COUNT = 10000
"""Most terminals or guests one allocation may take."""
MAX_CONNECTIONS = 100000
"""Most connections one connectome may list."""
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@/+-]{0,127}\Z")
_ENDPOINT = re.compile(
    rf"(?:(?P<fqdn>[a-z0-9.-]{{1,253}})/)?(?P<server>{SERVERNAME_RE.pattern})"
    rf"\.(?P<terminal>{TERMINAL_NAME_RE.pattern})\Z"
)
_ROLE_DIRECTIONS = {"src": ("output", "multiplexer"), "dst": ("input", "combiner")}
_FAN = {"src": "multiplexer", "dst": "combiner"}


def check_id(value: object, where: str) -> str:
    """Return ``value`` if it is a valid holder, connection or connectome ID.

    Raises:
        InputError: naming ``where``.

    """
    if not isinstance(value, str) or not _ID.match(value):
        reason = f"{value!r} must be 1-128 of letters, digits, _ . : @ / + - (no spaces)"
        raise InputError(where, reason)
    return value


@dataclass(frozen=True, slots=True)
class Request:
    """A checked allocation request.

    Attributes:
        count: how many terminals (or guests).
        holder: who takes them.
        connection: the connection using them, or None.
        whole_guests: take whole guests instead of single terminals.

    """

    count: int
    holder: str
    connection: str | None
    whole_guests: bool

    @classmethod
    def check(cls, count: object, holder: object, connection: object, whole: object) -> Request:
        """Validate the parts of a request.

        Raises:
            InputError: naming the bad part.

        """
        if type(count) is not int or not 1 <= count <= MAX_COUNT:
            raise InputError("count", f"{count!r} must be an int in [1, {MAX_COUNT}]")
        check_id(holder, "holder")
        if connection is not None:
            check_id(connection, "connection")
        if type(whole) is not bool:
            raise InputError("whole_guests", f"{whole!r} must be a bool")
        return cls(count, holder, connection, whole)  # type: ignore[arg-type]


def expire(db: sqlite3.Connection, now: float) -> dict[str, int]:
    """Delete guests and uses whose lease lapsed; return how many of each."""
    removed = {"guests": 0, "uses": 0}
    for table, pid, start, key in (
        ("guests", "pid", "pid_start", "guests"),
        ("uses", "holder_pid", "holder_start", "uses"),
    ):
        # One /proc look-up per distinct process, not per row.
        pairs = db.execute(
            f"SELECT DISTINCT {pid}, {start} FROM {table} WHERE {pid} IS NOT NULL"
        ).fetchall()
        for p, s in pairs:
            if process_start(p) != s:
                removed[key] += db.execute(
                    f"DELETE FROM {table} WHERE {pid} = ? AND {start} = ?", (p, s)
                ).rowcount
        removed[key] += db.execute(
            f"DELETE FROM {table} WHERE expires IS NOT NULL AND expires <= ?", (now,)
        ).rowcount
    return removed


def _address(fqdn: str, server: str, terminal: str) -> str:
    return f"{fqdn}/{server}.{terminal}"


def allocate(
    db: sqlite3.Connection, query: Query, request: Request, lease: Lease, now: float
) -> Allocation:
    """Take the terminals (or guests) a request asks for, or raise and take nothing.

    Raises:
        InsufficientError: if fewer than ``request.count`` qualify.

    """
    expire(db, now)
    where, params = query.guests_where()
    if request.whole_guests:
        guests = db.execute(
            f"SELECT g.id FROM guests g WHERE {where} "
            "AND EXISTS (SELECT 1 FROM terminals t WHERE t.guest_id = g.id) "
            "AND NOT EXISTS (SELECT 1 FROM terminals t WHERE t.guest_id = g.id AND t.uses > 0) "
            "ORDER BY g.id LIMIT ?",
            (*params, request.count),
        ).fetchall()
        found, unit = len(guests), "guests with every terminal free"
        rows = [
            row
            for (gid,) in guests
            for row in db.execute(
                "SELECT t.id, t.direction, g.fqdn, g.servername, t.name FROM terminals t "
                "JOIN guests g ON g.id = t.guest_id WHERE g.id = ? ORDER BY t.id",
                (gid,),
            )
        ]
    else:
        rows = db.execute(
            "SELECT t.id, t.direction, g.fqdn, g.servername, t.name FROM terminals t "
            f"JOIN guests g ON g.id = t.guest_id WHERE {where} AND {query.terminal_sql} "
            "AND t.uses = 0 ORDER BY g.id, t.id LIMIT ?",
            (*params, *query.terminal_params, request.count),
        ).fetchall()
        found, unit = len(rows), "free terminals"
    if found < request.count:
        raise InsufficientError(
            f"{found} {unit} match {query.text!r}, {request.count} asked for; nothing taken"
        )
    allocation_id = str(uuidlib.uuid4())
    role = None
    db.executemany(
        "INSERT INTO uses (terminal_id, allocation, holder, holder_pid, holder_start, expires, "
        "connection, role, since) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                tid,
                allocation_id,
                request.holder,
                lease.pid,
                lease.start,
                lease.expires,
                request.connection,
                role
                if request.connection is None
                else ("src" if direction in _ROLE_DIRECTIONS["src"] else "dst"),
                now,
            )
            for tid, direction, *_ in rows
        ],
    )
    return Allocation(
        id=allocation_id,
        holder=request.holder,
        connection=request.connection,
        created=now,
        terminals=tuple(_address(*row[2:]) for row in rows),
        lease=lease,
    )


def release(db: sqlite3.Connection, allocation_id: str) -> int:
    """Free an allocation's terminals; return how many.

    Raises:
        InputError: if the ID is malformed. NotFoundError: if it holds nothing.

    """
    check_id(allocation_id, "allocation")
    freed = db.execute("DELETE FROM uses WHERE allocation = ?", (allocation_id,)).rowcount
    if freed == 0:
        raise NotFoundError(f"no allocation {allocation_id} holds any terminal")
    return freed


def renew(db: sqlite3.Connection, allocation_id: str, lease: Lease, now: float) -> None:
    """Extend a heartbeat-leased allocation to ``lease.expires``.

    Raises:
        InputError: malformed ID. NotFoundError: no such allocation (or it lapsed).
        ConflictError: the allocation is tied to a process, which needs no heartbeat.

    """
    check_id(allocation_id, "allocation")
    rows = db.execute(
        "SELECT holder_pid, expires FROM uses WHERE allocation = ?", (allocation_id,)
    ).fetchall()
    if not rows or any(exp is not None and exp <= now for _pid, exp in rows):
        raise NotFoundError(f"no allocation {allocation_id} holds any terminal (or it lapsed)")
    if any(pid is not None for pid, _exp in rows):
        raise ConflictError(f"allocation {allocation_id} has a process lease; no heartbeat")
    db.execute("UPDATE uses SET expires = ? WHERE allocation = ?", (lease.expires, allocation_id))


def allocations(db: sqlite3.Connection) -> list[Allocation]:
    """Return every allocation that still holds terminals, oldest first."""
    found: dict[str, Allocation] = {}
    for aid, holder, conn, since, pid, start, exp, fqdn, server, name in db.execute(
        "SELECT u.allocation, u.holder, u.connection, u.since, u.holder_pid, u.holder_start, "
        "u.expires, g.fqdn, g.servername, t.name FROM uses u "
        "JOIN terminals t ON t.id = u.terminal_id JOIN guests g ON g.id = t.guest_id "
        "WHERE u.allocation IS NOT NULL ORDER BY u.since, u.id"
    ):
        before = found.get(aid)
        terminals = (
            (*before.terminals, _address(fqdn, server, name))
            if before
            else (_address(fqdn, server, name),)
        )
        found[aid] = Allocation(aid, holder, conn, since, terminals, Lease(pid, start, exp))
    return list(found.values())


def check_version(connectome_id: object, version: object) -> None:
    """Validate a connectome ID and version.

    Raises:
        InputError: naming the bad one.

    """
    check_id(connectome_id, "connectome.id")
    if type(version) is not int or not 0 <= version < 1 << 63:
        raise InputError("connectome.version", f"{version!r} must be a non-negative int")


def check_connections(
    connections: Iterable[Connection | Sequence[str] | Mapping[str, str]],
) -> tuple[Connection, ...]:
    """Validate a connection list (records, triples or ``{id, src, dst}`` objects).

    Raises:
        InputError: naming the index and part at fault.

    """
    if isinstance(connections, str | bytes | Mapping) or not isinstance(connections, Iterable):
        raise InputError("connections", "must be a list of (id, src, dst)")
    checked: list[Connection] = []
    seen: set[str] = set()
    for index, item in enumerate(connections):
        where = f"connections[{index}]"
        if index >= MAX_CONNECTIONS:
            raise InputError("connections", f"more than {MAX_CONNECTIONS}")
        if isinstance(item, Mapping):
            if set(item) != {"id", "src", "dst"}:
                raise InputError(where, "needs exactly id, src, dst")
            item = Connection(item["id"], item["src"], item["dst"])
        elif not isinstance(item, Connection):
            if isinstance(item, str | bytes) or not isinstance(item, Sequence) or len(item) != 3:
                raise InputError(where, f"{item!r} is not (id, src, dst)")
            item = Connection(*item)
        check_id(item.id, f"{where}.id")
        for end in ("src", "dst"):
            value = getattr(item, end)
            if not isinstance(value, str) or not _ENDPOINT.match(value):
                reason = f"{value!r} is not server.terminal (or fqdn/server.terminal)"
                raise InputError(f"{where}.{end}", reason)
        if item.id in seen:
            raise InputError(f"{where}.id", f"{item.id!r} listed twice")
        seen.add(item.id)
        checked.append(item)
    return tuple(checked)


def _resolve(db: sqlite3.Connection, endpoint: str, where: str) -> tuple[int, str]:
    """Return (terminal id, direction) for ``[fqdn/]server.terminal``."""
    parts = _ENDPOINT.match(endpoint)
    assert parts is not None  # checked by check_connections
    sql = (
        "SELECT t.id, t.direction, g.fqdn FROM terminals t JOIN guests g ON g.id = t.guest_id "
        "WHERE g.servername = ? AND t.name = ?"
    )
    params: tuple[str, ...] = (parts["server"], parts["terminal"])
    if parts["fqdn"]:
        sql += " AND g.fqdn = ?"
        params += (parts["fqdn"],)
    rows = db.execute(sql, params).fetchall()
    if not rows:
        raise NotFoundError(f"{where}: no registered terminal {endpoint}")
    if len(rows) > 1:
        hosts = ", ".join(sorted(row[2] for row in rows))
        raise ConflictError(f"{where}: {endpoint} is ambiguous (on {hosts}); write fqdn/{endpoint}")
    return rows[0][0], rows[0][1]


def record_connectome(
    db: sqlite3.Connection,
    connectome_id: str,
    version: int,
    connections: tuple[Connection, ...],
    lease: Lease,
    now: float,
) -> None:
    """Make the uses match the connectome (see ``Hostess.record_connectome``).

    Raises:
        NotFoundError: for an unknown terminal. InputError: for a wrong direction.
        ConflictError: for a stale version or a terminal another holder uses.

    """
    current = db.execute("SELECT id, version FROM connectome").fetchone()
    desired: dict[tuple[int, str], str] = {}  # (terminal, connection) -> role
    exclusive: dict[int, str] = {}
    for index, conn in enumerate(connections):
        for role, endpoint in (("src", conn.src), ("dst", conn.dst)):
            where = f"connections[{index}].{role}"
            tid, direction = _resolve(db, endpoint, where)
            if direction not in _ROLE_DIRECTIONS[role]:
                allowed = " or ".join(_ROLE_DIRECTIONS[role])
                raise InputError(where, f"{endpoint} is {direction}; a {role} must be {allowed}")
            if direction != _FAN[role]:
                if tid in exclusive:
                    raise ConflictError(
                        f"{where}: {endpoint} ({direction}) is already used by connection "
                        f"{exclusive[tid]!r} in this connectome"
                    )
                exclusive[tid] = conn.id
            desired[(tid, conn.id)] = role
    if current is not None and current[0] == connectome_id:
        if version < current[1]:
            raise ConflictError(
                f"connectome {connectome_id} version {version} is older than the recorded "
                f"{current[1]}"
            )
        if version == current[1]:
            # The same version again is a refresh (servers came or went since): apply it,
            # unless it changes nothing.
            held = {
                (tid, conn)
                for tid, conn in db.execute(
                    "SELECT terminal_id, connection FROM uses WHERE connectome IS NOT NULL"
                )
            }
            if held == set(desired):
                return
    existing = {
        (tid, conn): use_id
        for use_id, tid, conn in db.execute(
            "SELECT id, terminal_id, connection FROM uses WHERE connectome IS NOT NULL"
        )
    }
    for key, use_id in existing.items():
        if key not in desired:
            db.execute("DELETE FROM uses WHERE id = ?", (use_id,))
    for (tid, conn), role in desired.items():
        if (tid, conn) in existing:
            db.execute(
                "UPDATE uses SET connectome = ? WHERE id = ?", (connectome_id, existing[tid, conn])
            )
            continue
        _bind(db, tid, conn, role, connectome_id, lease, now)
    db.execute(
        "INSERT INTO connectome (singleton, id, version, recorded) VALUES (1, ?, ?, ?) "
        "ON CONFLICT (singleton) DO UPDATE SET id = excluded.id, version = excluded.version, "
        "recorded = excluded.recorded",
        (connectome_id, version, now),
    )


def _bind(
    db: sqlite3.Connection,
    tid: int,
    conn: str,
    role: str,
    connectome_id: str,
    lease: Lease,
    now: float,
) -> None:
    """Mark terminal ``tid`` used by ``conn``: bind an allocation made for it, or add a use."""
    others = db.execute(
        "SELECT u.id, u.connection, u.allocation, u.holder, t.direction FROM uses u "
        "JOIN terminals t ON t.id = u.terminal_id WHERE u.terminal_id = ? ORDER BY u.id",
        (tid,),
    ).fetchall()
    for use_id, other_conn, allocation, _holder, _direction in others:
        if other_conn == conn or (other_conn is None and allocation is not None):
            db.execute(
                "UPDATE uses SET connection = ?, role = ?, connectome = ? WHERE id = ?",
                (conn, role, connectome_id, use_id),
            )
            return
    if others and others[0][4] != _FAN[role]:
        _, other_conn, allocation, holder, direction = others[0]
        taken = f"connection {other_conn!r}" if other_conn else f"allocation {allocation}"
        name = db.execute(
            "SELECT g.servername || '.' || t.name FROM terminals t JOIN guests g "
            "ON g.id = t.guest_id WHERE t.id = ?",
            (tid,),
        ).fetchone()[0]
        raise ConflictError(
            f"{name} ({direction}) is in use by {taken} of {holder!r}; cannot give it to "
            f"connection {conn!r}"
        )
    db.execute(
        "INSERT INTO uses (terminal_id, holder, holder_pid, holder_start, expires, connection, "
        "role, connectome, since) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            tid,
            f"connectome:{connectome_id}",
            lease.pid,
            lease.start,
            lease.expires,
            conn,
            role,
            connectome_id,
            now,
        ),
    )


def connectome(db: sqlite3.Connection) -> Connectome:
    """Read the connectome back from the terminals' uses."""
    current = db.execute("SELECT id, version FROM connectome").fetchone()
    ends: dict[str, dict[str, str]] = {}
    for conn, role, server, name in db.execute(
        "SELECT u.connection, u.role, g.servername, t.name FROM uses u "
        "JOIN terminals t ON t.id = u.terminal_id JOIN guests g ON g.id = t.guest_id "
        "WHERE u.connectome IS NOT NULL"
    ):
        ends.setdefault(conn, {})[role] = f"{server}.{name}"
    connections = tuple(
        sorted(Connection(cid, e.get("src", ""), e.get("dst", "")) for cid, e in ends.items())
    )
    return Connectome(
        id=current[0] if current else None,
        version=current[1] if current else None,
        connections=connections,
    )
