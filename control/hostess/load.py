"""Guests out of the registry's tables: one query for the rows, three per 500 for the rest."""

from __future__ import annotations

import json
import sqlite3
import uuid as uuidlib
from collections.abc import Sequence
from typing import Any

from control.hostess.identity import Identity
from control.hostess.lease import Lease
from control.hostess.records import Guest, Terminal, Use

CHUNK = 500  # bound on SQL parameters per IN (...) list

GUEST_COLUMNS = (
    "g.id, g.uuid, g.fqdn, g.servername, g.class, g.owner, g.auth_flag, g.auth_mechanism, "
    "g.pid, g.pid_start, g.expires, g.registered, g.metadata"
)


def load_guests(
    db: sqlite3.Connection,
    where: str,
    params: Sequence[object],
    ids_out: list[int] | None = None,
) -> list[Guest]:
    """Return the guests of ``SELECT ... FROM guests g WHERE {where}``, in that order.

    Terminals, tags and uses come in three queries per 500 guests, not one per guest.
    ``ids_out``, when given, receives the guests' row ids (in the same order).
    """
    rows = db.execute(f"SELECT {GUEST_COLUMNS} FROM guests g WHERE {where}", params).fetchall()
    if not rows:
        return []
    ids = [row[0] for row in rows]
    if ids_out is not None:
        ids_out.extend(ids)
    terminals: dict[int, list[tuple[Any, ...]]] = {i: [] for i in ids}
    tags: dict[int, list[str]] = {i: [] for i in ids}
    uses: dict[int, list[Use]] = {}
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        marks = ",".join("?" * len(chunk))
        for row in db.execute(
            "SELECT guest_id, id, name, direction, message_size FROM terminals "
            f"WHERE guest_id IN ({marks}) ORDER BY id",
            chunk,
        ):
            terminals[row[0]].append(row[1:])
        for tag, gid in db.execute(
            f"SELECT tag, guest_id FROM tags WHERE guest_id IN ({marks}) ORDER BY tag", chunk
        ):
            tags[gid].append(tag)
        for tid, holder, allocation, connection, since in db.execute(
            "SELECT u.terminal_id, u.holder, u.allocation, u.connection, u.since "
            f"FROM uses u JOIN terminals t ON t.id = u.terminal_id "
            f"WHERE t.guest_id IN ({marks}) ORDER BY u.id",
            chunk,
        ):
            uses.setdefault(tid, []).append(Use(holder, allocation, connection, since))
    guests = []
    for gid, uid, fqdn, server, klass, owner, flag, mech, pid, start, exp, reg, meta in rows:
        guests.append(
            Guest(
                identity=Identity.trusted(
                    fqdn,
                    server,
                    klass & 0xFFFF_FFFF_FFFF_FFFF,
                    owner,
                    bool(flag),
                    mech,
                    uuidlib.UUID(uid),
                ),
                terminals=tuple(
                    Terminal(name, direction, size, tuple(uses.get(tid, ())))
                    for tid, name, direction, size in terminals[gid]
                ),
                tags=tuple(tags[gid]),
                metadata={} if meta == "{}" else json_object(meta),
                lease=Lease(pid, start, exp),
                registered=reg,
            )
        )
    return guests


def json_object(text: str) -> dict[str, Any]:
    """Return the JSON object stored in ``text`` ({} for anything else)."""
    value = json.loads(text)
    return value if isinstance(value, dict) else {}
