"""Hostess: the guest book — who is here, what they offer, which terminals are in use.

The public face::

    from control.hostess import Hostess, Identity, Lease, TerminalSpec

    with Hostess("hostess.sqlite") as book:
        book.register("host.example:cam0:1200:lab:0:none:<uuid>",
                      [TerminalSpec("frames", "output", 4096)], tags=["gpu"])
        book.query("class&0xff00=0x1200 tag=gpu terminal.direction=output free")
        taken = book.allocate("server=cam0 free", 1, holder="alice")
        book.release(taken.id)
"""

from __future__ import annotations

from control.hostess.errors import (
    ConflictError,
    HostessError,
    IdentityError,
    InputError,
    InsufficientError,
    NotFoundError,
    QueryError,
    SchemaError,
)
from control.hostess.identity import AUTH_MECHANISMS, Identity
from control.hostess.lease import Lease
from control.hostess.query import Query, parse
from control.hostess.records import (
    Allocation,
    Connection,
    Connectome,
    Guest,
    Page,
    Terminal,
    TerminalSpec,
    Use,
)
from control.hostess.registry import Hostess
from control.manifest import DIRECTIONS

__all__ = [
    "AUTH_MECHANISMS",
    "DIRECTIONS",
    "Allocation",
    "ConflictError",
    "Connection",
    "Connectome",
    "Guest",
    "Hostess",
    "HostessError",
    "Identity",
    "IdentityError",
    "InputError",
    "InsufficientError",
    "Lease",
    "NotFoundError",
    "Page",
    "Query",
    "QueryError",
    "SchemaError",
    "Terminal",
    "TerminalSpec",
    "Use",
    "parse",
]
