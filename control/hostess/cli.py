"""``pykernel hostess list|query|allocate|renew|release|register|leave|connectome|expire``.

Every verb takes ``--db PATH`` (default: ``$PYKERNEL_HOSTESS_DB``, else
``$XDG_STATE_HOME/pykernel/hostess.sqlite``) and prints JSON with ``--json``. A filter
error is one line naming the column and token and quoting the expression.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from control.hostess.errors import InputError, QueryError
from control.hostess.lease import Lease
from control.hostess.records import Allocation, TerminalSpec
from control.hostess.registry import MAX_LIMIT, Hostess
from pykernel.cli import add_json_flag, emit

DEFAULT_TTL = 3600.0
"""Heartbeat lease (seconds) of an allocation made from the command line without ``--pid``."""


def default_db() -> Path:
    """Return the registry path used when ``--db`` is not given."""
    env = os.environ.get("PYKERNEL_HOSTESS_DB")
    if env:
        return Path(env)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "pykernel" / "hostess.sqlite"


@contextmanager
def _open(args: argparse.Namespace) -> Iterator[Hostess]:
    with Hostess(args.db or default_db()) as hostess:
        yield hostess


class FilterError(QueryError):
    """A :class:`QueryError` told in one line with the whole expression, for the CLI.

    Errors leave the command as one line (scripts read stderr line by line), so instead of
    a caret drawing it names the column and quotes the expression (repr: a tab or newline
    in it cannot break the line).
    """

    def __str__(self) -> str:
        """Return e.g. ``query column 9 ('ownr') in 'tag=gpu ownr=x': unknown field ...``."""
        return (f"query column {self.column} ({self.token!r}) in {self.expression!r}: "
                f"{self.reason}")


@contextmanager
def _filter_errors_in_one_line() -> Iterator[None]:
    try:
        yield
    except FilterError:
        raise
    except QueryError as exc:
        raise FilterError(exc.expression, exc.column, exc.token, exc.reason) from None


def _render_guests(data: dict[str, Any]) -> str:
    lines = []
    for guest in data["guests"]:
        terminals = " ".join(
            f"{t['name']}({t['direction']}{', in use' if t['in_use'] else ''})"
            for t in guest["terminals"]
        )
        tags = f" [{', '.join(guest['tags'])}]" if guest["tags"] else ""
        lines.append(f"{guest['identity']}{tags} {terminals}".rstrip())
    lines.append(f"{data['count']} guest(s)")
    if data.get("next"):
        lines.append(f"more: --after {data['next']}")
    return "\n".join(lines)


def _lease(args: argparse.Namespace, default_ttl: float | None) -> Lease:
    if args.pid is not None:
        return Lease.process(args.pid)
    ttl = args.ttl if args.ttl is not None else default_ttl
    if ttl is None:
        raise InputError("lease", "give --pid PID or --ttl SECONDS")
    return Lease.heartbeat(ttl)


def _render_allocation(data: dict[str, Any]) -> str:
    return f"{data['id']} {data['holder']}: {' '.join(data['terminals'])}"


def _cmd_list(args: argparse.Namespace) -> int:
    with _open(args) as hostess, _filter_errors_in_one_line():
        hostess.expire()
        limit = MAX_LIMIT if args.limit is None else args.limit
        page = hostess.page(args.filter, limit=limit, after=args.after)
        emit(args, page.to_dict(), _render_guests)
    return 0


def _cmd_allocate(args: argparse.Namespace) -> int:
    with _open(args) as hostess, _filter_errors_in_one_line():
        allocation: Allocation = hostess.allocate(
            args.filter,
            args.count,
            holder=args.holder,
            connection=args.connection,
            whole_guests=args.guests,
            lease=_lease(args, DEFAULT_TTL),
        )
    emit(args, allocation.to_dict(), _render_allocation)
    return 0


def _cmd_renew(args: argparse.Namespace) -> int:
    with _open(args) as hostess:
        lease = hostess.renew(args.allocation, args.ttl)
    emit(args, lease.to_dict(), lambda d: f"renewed until {d['expires']:.0f}")
    return 0


def _cmd_release(args: argparse.Namespace) -> int:
    with _open(args) as hostess:
        freed = hostess.release(args.allocation)
    emit(args, {"released": freed, "allocation": args.allocation}, lambda d: f"freed {freed}")
    return 0


def _cmd_register(args: argparse.Namespace) -> int:
    terminals = [
        TerminalSpec.parse(text, f"--terminal[{i}]") for i, text in enumerate(args.terminal)
    ]
    metadata: dict[str, Any] = {}
    for index, item in enumerate(args.meta):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--meta[{index}]", f"{item!r} is not KEY=JSON")
        try:
            metadata[key] = json.loads(value)
        except json.JSONDecodeError:
            metadata[key] = value  # a bare word is kept as a string
    lease = _lease(args, None)
    with _open(args) as hostess:
        guest = hostess.register(
            args.identity, terminals, tags=args.tag, metadata=metadata, lease=lease
        )
    emit(args, guest.to_dict(), lambda d: f"registered {d['identity']}")
    return 0


def _cmd_leave(args: argparse.Namespace) -> int:
    with _open(args) as hostess:
        hostess.leave(args.uuid)
    emit(args, {"left": args.uuid}, lambda d: f"left {d['left']}")
    return 0


def _cmd_connectome(args: argparse.Namespace) -> int:
    with _open(args) as hostess:
        held = hostess.connectome().to_dict()

    def render(data: dict[str, Any]) -> str:
        head = f"connectome {data['id']} version {data['version']}"
        rows = [f"{c['id']}: {c['src']} -> {c['dst']}" for c in data["connections"]]
        return "\n".join([head, *rows])

    emit(args, held, render)
    return 0


def _cmd_expire(args: argparse.Namespace) -> int:
    with _open(args) as hostess:
        removed = hostess.expire()
    emit(args, removed, lambda d: f"expired {d['guests']} guest(s), {d['uses']} use(s)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``hostess`` verb group to the ``pykernel`` command."""
    parser = subparsers.add_parser("hostess", help="the guest book: guests, terminals, allocations")
    verbs = parser.add_subparsers(dest="hostess_verb", metavar="VERB", parser_class=type(parser))
    verbs.required = True
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", type=Path, help="registry file (default: $PYKERNEL_HOSTESS_DB, "
                        "else $XDG_STATE_HOME/pykernel/hostess.sqlite, XDG_STATE_HOME "
                        "defaulting to ~/.local/state)")
    add_json_flag(common)

    def verb(name: str, help_text: str, func: Any) -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, help=help_text, parents=[common], description=help_text)
        sub.set_defaults(func=func)
        return sub

    def lease_flags(sub: argparse.ArgumentParser, ttl_help: str) -> None:
        group = sub.add_mutually_exclusive_group()
        group.add_argument("--pid", type=int, help="tie the lease to this running process")
        group.add_argument("--ttl", type=float, help=ttl_help)

    for name, text in (("list", "list guests"), ("query", "list guests matching a filter")):
        sub = verb(name, text, _cmd_list)
        sub.add_argument(
            "filter",
            nargs="?" if name == "list" else None,
            default="",
            help="filter expression, e.g. 'class&0xff00=0x1200 tag=gpu free'",
        )
        sub.add_argument("--limit", type=int, default=None,
                         help=f"at most this many guests (1 to {MAX_LIMIT})")
        sub.add_argument("--after", metavar="CURSOR", default=None,
                         help="start after the page that printed this 'next' cursor")

    sub = verb("allocate", "take free terminals (or whole guests) matching a filter", _cmd_allocate)
    sub.add_argument("filter", help="filter expression")
    sub.add_argument("-n", "--count", type=int, default=1, help="how many (default 1)")
    sub.add_argument("--guests", action="store_true", help="take whole guests, not terminals")
    sub.add_argument("--holder", required=True, help="who holds the allocation")
    sub.add_argument("--connection", help="the connection that will use the terminals")
    lease_flags(sub, f"heartbeat lease in seconds (default {DEFAULT_TTL:.0f})")

    sub = verb("release", "free an allocation's terminals", _cmd_release)
    sub.add_argument("allocation", help="allocation ID")

    sub = verb("renew", "extend an allocation's heartbeat lease", _cmd_renew)
    sub.add_argument("allocation", help="allocation ID")
    sub.add_argument("--ttl", type=float, default=DEFAULT_TTL, help="seconds from now")

    sub = verb("register", "register a guest", _cmd_register)
    sub.add_argument("identity", help="fqdn:servername:classHex:owner:authFlag:authMechanism:uuid")
    sub.add_argument("--terminal", action="append", default=[], help="name:direction:message_size")
    sub.add_argument("--tag", action="append", default=[], help="a tag (repeatable)")
    sub.add_argument("--meta", action="append", default=[], help="KEY=JSON metadata (repeatable)")
    lease_flags(sub, "heartbeat lease in seconds (renew it through the API)")

    sub = verb("leave", "remove a guest", _cmd_leave)
    sub.add_argument("uuid", help="the guest's UUID")

    verb("connectome", "show the connectome Hostess holds", _cmd_connectome)
    verb("expire", "remove lapsed guests and free lapsed allocations now", _cmd_expire)
