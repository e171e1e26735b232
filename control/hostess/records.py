"""The records Hostess hands out: guests, terminals, uses, allocations, the connectome.

All are frozen dataclasses with ``to_dict()`` for JSON. Inputs from outside (terminal specs,
tags, metadata) are checked here so every entry point refuses them the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from control.hostess.errors import IdentityError, InputError
from control.hostess.identity import Identity, check_name
from control.hostess.lease import Lease
from control.manifest import DIRECTIONS, MAX_MESSAGE_SIZE

MAX_TERMINALS = 1024
"""Most terminals one guest may declare."""
MAX_TAGS = 64
"""Most tags one guest may carry."""
MAX_METADATA = 65536
"""Largest metadata, in bytes of compact JSON."""
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/+-]{0,63}\Z")


@dataclass(frozen=True, slots=True)
class TerminalSpec:
    """A terminal a guest declares when it registers.

    Attributes:
        name: the terminal's name (a letter or ``_``, then letters, digits or ``_``).
        direction: ``input``, ``output``, ``multiplexer`` or ``combiner``.
        message_size: the largest message it carries, in bytes.

    """

    name: str
    direction: str
    message_size: int

    def check(self, where: str) -> None:
        """Raise :class:`InputError` naming ``where`` if a field is invalid."""
        if not isinstance(self.name, str):
            raise InputError(f"{where}.name", f"{self.name!r} is not a string")
        try:
            check_name(self.name, "terminal")
        except IdentityError as exc:
            raise InputError(f"{where}.name", f"{self.name!r} {exc.reason}") from exc
        if self.direction not in DIRECTIONS:
            choices = ", ".join(DIRECTIONS)
            raise InputError(f"{where}.direction", f"{self.direction!r} is not one of {choices}")
        size = self.message_size
        if type(size) is not int or not 0 < size <= MAX_MESSAGE_SIZE:
            raise InputError(f"{where}.message_size", f"{size!r} must be an int in [1, 2**30]")

    @classmethod
    def parse(cls, text: str, where: str = "terminal") -> TerminalSpec:
        """Parse ``name:direction:message_size`` (the CLI's form).

        Raises:
            InputError: naming ``where`` and the bad part.

        """
        parts = text.split(":")
        if len(parts) != 3:
            raise InputError(where, f"{text!r} is not name:direction:message_size")
        if not re.fullmatch(r"[0-9]{1,10}", parts[2]):
            raise InputError(f"{where}.message_size", f"{parts[2]!r} is not a decimal size")
        spec = cls(parts[0], parts[1], int(parts[2]))
        spec.check(where)
        return spec


def check_terminals(terminals: object) -> tuple[TerminalSpec, ...]:
    """Validate a guest's terminal list (specs, or dicts with the same keys).

    Raises:
        InputError: naming the terminal's index and field.

    """
    if not isinstance(terminals, list | tuple):
        raise InputError("terminals", "must be a list")
    if len(terminals) > MAX_TERMINALS:
        raise InputError("terminals", f"{len(terminals)} terminals, at most {MAX_TERMINALS}")
    specs: list[TerminalSpec] = []
    names: set[str] = set()
    for index, item in enumerate(terminals):
        where = f"terminals[{index}]"
        if isinstance(item, Mapping):
            extra = set(item) - {"name", "direction", "message_size"}
            if extra or len(item) != 3:
                raise InputError(where, "needs exactly name, direction, message_size")
            item = TerminalSpec(item["name"], item["direction"], item["message_size"])
        if not isinstance(item, TerminalSpec):
            raise InputError(where, f"{item!r} is not a terminal")
        item.check(where)
        if item.name in names:
            raise InputError(f"{where}.name", f"{item.name!r} declared twice")
        names.add(item.name)
        specs.append(item)
    return tuple(specs)


def check_tags(tags: object) -> tuple[str, ...]:
    """Validate tags; return them sorted without duplicates.

    Raises:
        InputError: naming the bad tag's index.

    """
    if not isinstance(tags, list | tuple | set | frozenset):
        raise InputError("tags", "must be a list of strings")
    if len(tags) > MAX_TAGS:
        raise InputError("tags", f"{len(tags)} tags, at most {MAX_TAGS}")
    for index, tag in enumerate(tags):
        if not isinstance(tag, str) or not _TAG.match(tag):
            reason = f"{tag!r} must be 1-64 of letters, digits, _ . : / + - (no glob characters)"
            raise InputError(f"tags[{index}]", reason)
    return tuple(sorted(set(tags)))


def check_metadata(metadata: object) -> str:
    """Validate metadata (a JSON object); return its compact, sorted JSON text.

    Raises:
        InputError: if it is not a JSON-able object with string keys, or too large.

    """
    if not isinstance(metadata, Mapping):
        raise InputError("metadata", "must be an object (a mapping with string keys)")
    try:
        text = json.dumps(metadata, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError("metadata", f"not JSON-serialisable: {exc}") from exc
    if len(text.encode()) > MAX_METADATA:
        raise InputError("metadata", f"{len(text.encode())} bytes of JSON, at most {MAX_METADATA}")
    return text


@dataclass(frozen=True, slots=True)
class Use:
    """One use of a terminal: by an allocation, a connection, or both.

    Attributes:
        holder: who holds it (a free-form name; ``connectome:ID`` for the kernel's).
        allocation: the allocation ID, or None when only the connectome put it here.
        connection: the connection ID using the terminal, or None while only allocated.
        since: when the use began (Unix time).

    """

    holder: str
    allocation: str | None
    connection: str | None
    since: float

    def to_dict(self) -> dict[str, Any]:
        """Return the use as JSON-ready data."""
        return {
            "holder": self.holder,
            "allocation": self.allocation,
            "connection": self.connection,
            "since": self.since,
        }


@dataclass(frozen=True, slots=True)
class Terminal:
    """A terminal as recorded, with its uses (empty when free).

    Attributes:
        name: the terminal's name.
        direction: its direction.
        message_size: its largest message, in bytes.
        uses: who is using it now.

    """

    name: str
    direction: str
    message_size: int
    uses: tuple[Use, ...] = ()

    @property
    def in_use(self) -> bool:
        """Whether anything is using the terminal."""
        return bool(self.uses)

    def to_dict(self) -> dict[str, Any]:
        """Return the terminal as JSON-ready data."""
        return {
            "name": self.name,
            "direction": self.direction,
            "message_size": self.message_size,
            "in_use": self.in_use,
            "uses": [use.to_dict() for use in self.uses],
        }


@dataclass(frozen=True, slots=True)
class Guest:
    """A registered guest.

    Attributes:
        identity: who it is.
        terminals: what it offers, in declaration order.
        tags: its tags, sorted.
        metadata: free-form JSON object.
        lease: what keeps it registered.
        registered: when it registered (Unix time).

    """

    identity: Identity
    terminals: tuple[Terminal, ...]
    tags: tuple[str, ...]
    metadata: dict[str, Any] = field(hash=False)
    lease: Lease
    registered: float

    def to_dict(self) -> dict[str, Any]:
        """Return the guest as JSON-ready data."""
        ident = self.identity
        return {
            "identity": ident.format(),
            "fqdn": ident.fqdn,
            "servername": ident.servername,
            "class": f"{ident.klass:#x}",
            "owner": ident.owner,
            "auth_flag": ident.auth_flag,
            "auth_mechanism": ident.auth_mechanism,
            "uuid": str(ident.uuid),
            "terminals": [terminal.to_dict() for terminal in self.terminals],
            "tags": list(self.tags),
            "metadata": self.metadata,
            "lease": self.lease.to_dict(),
            "registered": self.registered,
        }


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a query: its guests, oldest first, and where the next page starts.

    ``next`` is an opaque cursor to pass as ``after`` for the next page; None on the last
    page. Paging is by key, so guests that arrive or leave meanwhile never shift a page:
    every guest present throughout is seen exactly once.
    """

    guests: tuple[Guest, ...]
    next: str | None

    def to_dict(self) -> dict[str, Any]:
        """Return the page as JSON-able data: guests, count, next."""
        return {
            "guests": [g.to_dict() for g in self.guests],
            "count": len(self.guests),
            "next": self.next,
        }


@dataclass(frozen=True, slots=True)
class Allocation:
    """Terminals taken together by one holder.

    Attributes:
        id: the allocation ID (give it to ``release``).
        holder: who holds it.
        connection: the connection using the terminals, if known at allocation time.
        created: when (Unix time).
        terminals: the terminals taken, each as ``fqdn/server.terminal``.
        lease: what keeps it alive; when it lapses the terminals are freed.

    """

    id: str
    holder: str
    connection: str | None
    created: float
    terminals: tuple[str, ...]
    lease: Lease

    def to_dict(self) -> dict[str, Any]:
        """Return the allocation as JSON-ready data."""
        return {
            "id": self.id,
            "holder": self.holder,
            "connection": self.connection,
            "created": self.created,
            "terminals": list(self.terminals),
            "lease": self.lease.to_dict(),
        }


@dataclass(frozen=True, slots=True, order=True)
class Connection:
    """One connection of the connectome: ``src`` terminal to ``dst`` terminal.

    Attributes:
        id: the connection's stable ID.
        src: the writing end, ``server.terminal``.
        dst: the reading end, ``server.terminal``.

    """

    id: str
    src: str
    dst: str

    def to_dict(self) -> dict[str, str]:
        """Return the connection as JSON-ready data."""
        return {"id": self.id, "src": self.src, "dst": self.dst}


@dataclass(frozen=True, slots=True)
class Connectome:
    """The connectome as Hostess holds it, read back from the terminals' uses.

    Attributes:
        id: the connectome ID last recorded, or None if none was.
        version: its version, or None.
        connections: every connection Hostess sees, sorted by ID.

    """

    id: str | None
    version: int | None
    connections: tuple[Connection, ...]

    def to_dict(self) -> dict[str, Any]:
        """Return the connectome as JSON-ready data."""
        return {
            "id": self.id,
            "version": self.version,
            "connections": [conn.to_dict() for conn in self.connections],
        }
