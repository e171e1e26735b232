"""The registry's SQLite schema, its version and the migration hook.

The schema version lives in ``PRAGMA user_version``. :data:`MIGRATIONS` maps a version ``v``
to the step that turns a version-``v`` database into version ``v + 1``; opening a database
runs every missing step in one transaction. A database newer than this code is refused.

The 64-bit class is stored as SQLite's signed 64-bit integer (two's complement), so
``class & mask = value`` works unchanged in SQL once mask and value are mapped the same way.
Each byte of the class has an expression index, which mask queries use (see
:func:`control.hostess.query.parse`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping

from control.hostess.errors import SchemaError

SCHEMA_VERSION = 1
"""The version this code reads and writes."""

_V1 = """
CREATE TABLE guests (
    id INTEGER PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    fqdn TEXT NOT NULL,
    servername TEXT NOT NULL,
    class INTEGER NOT NULL,
    owner TEXT NOT NULL,
    auth_flag INTEGER NOT NULL CHECK (auth_flag IN (0, 1)),
    auth_mechanism TEXT NOT NULL,
    pid INTEGER,
    pid_start INTEGER,
    expires REAL,
    registered REAL NOT NULL,
    metadata TEXT NOT NULL,
    CHECK ((pid IS NULL) <> (expires IS NULL)),
    UNIQUE (fqdn, servername)
);
CREATE INDEX guests_servername ON guests (servername);
CREATE INDEX guests_owner ON guests (owner);
CREATE INDEX guests_class_b0 ON guests ((class >> 0) & 255);
CREATE INDEX guests_class_b1 ON guests ((class >> 8) & 255);
CREATE INDEX guests_class_b2 ON guests ((class >> 16) & 255);
CREATE INDEX guests_class_b3 ON guests ((class >> 24) & 255);
CREATE INDEX guests_class_b4 ON guests ((class >> 32) & 255);
CREATE INDEX guests_class_b5 ON guests ((class >> 40) & 255);
CREATE INDEX guests_class_b6 ON guests ((class >> 48) & 255);
CREATE INDEX guests_class_b7 ON guests ((class >> 56) & 255);
CREATE INDEX guests_mechanism ON guests (auth_mechanism, auth_flag);
CREATE INDEX guests_pid ON guests (pid, pid_start) WHERE pid IS NOT NULL;
CREATE INDEX guests_expires ON guests (expires) WHERE expires IS NOT NULL;

CREATE TABLE tags (
    tag TEXT NOT NULL,
    guest_id INTEGER NOT NULL REFERENCES guests (id) ON DELETE CASCADE,
    PRIMARY KEY (tag, guest_id)
) WITHOUT ROWID;
CREATE INDEX tags_guest ON tags (guest_id);

CREATE TABLE terminals (
    id INTEGER PRIMARY KEY,
    guest_id INTEGER NOT NULL REFERENCES guests (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    direction TEXT NOT NULL
        CHECK (direction IN ('input', 'output', 'multiplexer', 'combiner')),
    message_size INTEGER NOT NULL CHECK (message_size > 0),
    uses INTEGER NOT NULL DEFAULT 0 CHECK (uses >= 0),
    UNIQUE (guest_id, name)
);
CREATE INDEX terminals_direction ON terminals (direction, guest_id);
CREATE INDEX terminals_used ON terminals (guest_id) WHERE uses > 0;

-- A terminal is in use while it has a row here. allocate() makes rows with an allocation
-- ID, record_connectome() binds a connection to them or makes its own rows.
CREATE TABLE uses (
    id INTEGER PRIMARY KEY,
    terminal_id INTEGER NOT NULL REFERENCES terminals (id) ON DELETE CASCADE,
    allocation TEXT,
    holder TEXT NOT NULL,
    holder_pid INTEGER,
    holder_start INTEGER,
    expires REAL,
    connection TEXT,
    role TEXT CHECK (role IN ('src', 'dst')),
    connectome TEXT,
    since REAL NOT NULL,
    CHECK ((holder_pid IS NULL) <> (expires IS NULL)),
    CHECK ((connection IS NULL) = (role IS NULL)),
    UNIQUE (terminal_id, connection)
);
CREATE INDEX uses_terminal ON uses (terminal_id);
CREATE INDEX uses_allocation ON uses (allocation) WHERE allocation IS NOT NULL;
CREATE INDEX uses_connection ON uses (connection) WHERE connection IS NOT NULL;
CREATE INDEX uses_pid ON uses (holder_pid, holder_start) WHERE holder_pid IS NOT NULL;
CREATE INDEX uses_expires ON uses (expires) WHERE expires IS NOT NULL;

-- terminals.uses counts the rows above, so "free" and "used" read one column and the few
-- terminals in use have their own small index.
CREATE TRIGGER uses_added AFTER INSERT ON uses BEGIN
    UPDATE terminals SET uses = uses + 1 WHERE id = NEW.terminal_id;
END;
CREATE TRIGGER uses_removed AFTER DELETE ON uses BEGIN
    UPDATE terminals SET uses = uses - 1 WHERE id = OLD.terminal_id;
END;
CREATE TRIGGER uses_moved AFTER UPDATE OF terminal_id ON uses BEGIN
    UPDATE terminals SET uses = uses - 1 WHERE id = OLD.terminal_id;
    UPDATE terminals SET uses = uses + 1 WHERE id = NEW.terminal_id;
END;

CREATE TABLE connectome (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    recorded REAL NOT NULL
);
"""

Migration = Callable[[sqlite3.Connection], None]


def _statements(script: str) -> list[str]:
    """Split a script into statements (trigger bodies hold ``;`` too)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    return statements


def _create_v1(db: sqlite3.Connection) -> None:
    # executescript() would COMMIT the migration's transaction; run statement by statement.
    for statement in _statements(_V1):
        db.execute(statement)


MIGRATIONS: Mapping[int, Migration] = {0: _create_v1}
"""Step ``v -> v + 1`` for each version ``v`` below :data:`SCHEMA_VERSION`."""


def migrate(
    db: sqlite3.Connection,
    migrations: Mapping[int, Migration] = MIGRATIONS,
    target: int = SCHEMA_VERSION,
) -> int:
    """Bring ``db`` up to version ``target`` in one transaction; return the old version.

    Args:
        db: an autocommit connection (``isolation_level=None``).
        migrations: the steps to use (tests pass their own to prove the hook).
        target: the version to reach.

    Raises:
        SchemaError: if the database is newer than ``target`` or a step is missing.

    """
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > target:
            raise SchemaError(
                f"registry schema version {version} is newer than this Hostess ({target})"
            )
        for step in range(version, target):
            if step not in migrations:
                raise SchemaError(f"no migration from registry schema version {step}")
            migrations[step](db)
        # PRAGMA takes no parameters; target is an int we control.
        db.execute(f"PRAGMA user_version = {int(target)}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return version
