"""Checks on a run-time connect or disconnect: lint's own rules, applied to the running system.

The request is refused before anything is created when an end is not ``server.terminal``
(400), or when :func:`control.lint.check_graph` finds an error at the new connection in
the running system plus that connection (:func:`control.state_export.check_new_connection`):
unknown server or terminal (404), a duplicate (409), a direction mismatch, a multiplexer
feeding a combiner, fan-out from a plain output, fan-in to a plain input, too many readers or
writers, a message larger than the pipe's slot or the reader's size, dtype/shape mismatch
(422). The answer carries lint's message and its code.

A disconnect is refused (422) when it would leave a required terminal unconnected: the
running system always stays one that lint accepts, so its export lints clean.
"""

from __future__ import annotations

import re

from control.state import SystemState
from control.state_export import check_disconnect, check_new_connection
from control.surface._errors import BadRequest, Conflict, NotFound, Refused, SurfaceError

_END = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}\.[A-Za-z_][A-Za-z0-9_]{0,63}")

_STATUS: dict[str, type[SurfaceError]] = {
    "unknown-server": NotFound, "unknown-terminal": NotFound, "duplicate-connection": Conflict,
}
_SOURCE_CODES = {"fan-out-plain-output", "too-many-readers"}


def check_connect(state: SystemState, source: str, target: str) -> None:
    """Raise a :class:`~control.surface._errors.SurfaceError` if ``source -> target`` is illegal.

    Args:
        state: the live state (servers, terminals, connections, pipes).
        source: ``server.terminal`` that writes.
        target: ``server.terminal`` that reads.

    Raises:
        BadRequest: an end is not ``server.terminal``.
        NotFound: unknown server or terminal.
        Conflict: the connection exists.
        Refused: another lint rule forbids it.

    """
    for value, field in ((source, "source"), (target, "target")):
        if not _END.fullmatch(value):
            raise BadRequest(f"{field} {value[:80]!r} must be 'server.terminal'", field)
    errors = check_new_connection(state, source, target)
    if not errors:
        return
    first = errors[0]
    at_source = first.field.endswith(".from") or first.code in _SOURCE_CODES
    field = "source" if at_source else "target"
    raise _STATUS.get(first.code, Refused)(f"{first.message} [{first.code}]", field)


def check_disconnect_allowed(state: SystemState, connection_id: str) -> None:
    """Refuse (422) a disconnect that would leave a required terminal unconnected.

    The running system must stay a system lint accepts (its export lints clean).

    Raises:
        Refused: lint's first error about the system without the connection.

    """
    errors = check_disconnect(state, connection_id)
    if errors:
        first = errors[0]
        raise Refused(f"{first.message} once {connection_id} is gone; connect another "
                      f"source first or stop the server [{first.code}]", "id")
