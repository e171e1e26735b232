"""The running system as a wiring file, and the wiring checks a run-time connect goes through.

:func:`wiring_of` rebuilds a :class:`control.wiring.Wiring` from the state (its planned
servers and its current connections, each with its pipe's geometry written out), so the very
rules of :func:`control.lint.check_graph` judge a run-time connect, and :func:`current_plan`
re-plans the running system (its connectome ID is the one a plan of the export gives).

:func:`export_yaml` writes that wiring as YAML: every connection carries its pipe's slots,
slot size, lossy flag and mode, every server its run settings with absolute paths, so the file
lints clean and plans the same from any directory.
"""

from __future__ import annotations

import os
from typing import Any

import yaml

from control.errors import WiringError
from control.lint import check_graph
from control.plan import Plan, build_plan
from control.state import SystemState
from control.wiring import ConnectionSpec, Diagnostic, ServerSpec, Wiring

__all__ = ["check_disconnect", "check_new_connection", "current_plan", "export_yaml",
           "plan_connect", "plan_disconnect", "wiring_of"]

_RESERVED = "PYKERNEL_"


def _python_path(servers: list[Any]) -> tuple[str, ...]:
    """Return the import roots all PYTHONPATHs start with (the file's ``python_path``)."""
    paths = [tuple((s.env.get("PYTHONPATH") or "").split(os.pathsep)) for s in servers]
    paths = [p if p != ("",) else () for p in paths]
    if not paths:
        return ()
    common = list(paths[0])
    for p in paths[1:]:
        n = 0
        while n < min(len(common), len(p)) and common[n] == p[n]:
            n += 1
        common = common[:n]
    return tuple(common)


def _own_env(env: dict[str, str], python_path: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """Return the environment the wiring file itself set (not what the plan adds)."""
    out = {k: v for k, v in env.items() if not k.startswith(_RESERVED) and k != "PYTHONPATH"}
    if "PYTHONPATH" in env:
        rest = env["PYTHONPATH"].split(os.pathsep)[len(python_path):]
        if rest:
            out["PYTHONPATH"] = os.pathsep.join(rest)
    return tuple(sorted(out.items()))


def _spec(s: Any, python_path: tuple[str, ...]) -> ServerSpec:
    return ServerSpec(s.name, s.kind, s.entry, tuple(s.argv), s.cwd,
                      _own_env(dict(s.env), python_path), s.restart, float(s.backoff_initial),
                      float(s.backoff_max), tuple(s.depends_on), s.manifest)


def _split(end: str) -> tuple[str, str]:
    server, _, terminal = end.partition(".")
    return server, terminal


def wiring_of(state: SystemState, extra: tuple[str, str] | None = None,
              without: tuple[str, str] | None = None) -> Wiring:
    """Rebuild the running system as a :class:`Wiring`, plus an ``extra`` connection to try.

    Args:
        state: the live state.
        extra: ``(source, target)`` appended last, its geometry unset (lint resolves it).
        without: ``(source, target)`` of a connection to leave out.

    """
    planned, conns = state.structure()
    conns = [c for c in conns if (c[0], c[1]) != without]
    python_path = _python_path(planned)
    connections = [
        ConnectionSpec(i, _split(src), _split(dst), g["slots"], g["slot_size"], g["lossy"],
                       g["mode"])
        for i, (src, dst, g) in enumerate(conns)
    ]
    if extra is not None:
        connections.append(ConnectionSpec(len(connections), _split(extra[0]), _split(extra[1])))
    first = planned[0] if planned else None
    return Wiring(
        file="<running system>", base_dir=first.cwd if first else os.getcwd(),
        system=state.system, python_path=python_path,
        slots=conns[0][2]["slots"] if conns else 64, lossy=False, mode=0o600,
        servers=tuple(_spec(s, python_path) for s in planned),
        connections=tuple(connections),
    )


def check_new_connection(state: SystemState, source: str, target: str) -> list[Diagnostic]:
    """Return lint's errors about connection ``source -> target`` added to the running system.

    Only the errors located at the new connection count: the running system itself passed
    lint at boot.
    """
    wiring = wiring_of(state, (source, target))
    index = len(wiring.connections) - 1
    mine = f"connections[{index}]"
    return [d for d in check_graph(wiring)
            if d.severity == "error" and (d.field == mine or d.field.startswith(mine + "."))]


def current_plan(state: SystemState) -> Plan:
    """Return the plan of the running system (servers and connections as they are now)."""
    return build_plan(wiring_of(state))


def plan_connect(state: SystemState, source: str, target: str) -> tuple[Plan, Any, Any]:
    """Plan the running system plus ``source -> target`` (for a kernel carrying out a connect).

    Returns:
        ``(plan, PlannedConnection, PlannedPipe)``: the whole new plan (servers' new
        ``PYKERNEL_TERMINALS`` included) and the new connection with its pipe. The pipe is
        the existing one when a multiplexer or combiner gains a peer (its ``max_readers`` /
        ``max_writers`` grow by one).

    Raises:
        WiringError: the connection breaks a lint rule (call the surface's checks first).

    """
    errors = check_new_connection(state, source, target)
    if errors:
        raise WiringError(errors)
    plan = build_plan(wiring_of(state, (source, target)))
    conn = next(c for c in plan.connections if (c.source, c.target) == (source, target))
    return plan, conn, next(p for p in plan.pipes if p.name == conn.pipe)


def check_disconnect(state: SystemState, connection_id: str) -> list[Diagnostic]:
    """Return lint's errors about the running system without ``connection_id``.

    The running system passed lint, so any error is the removal's doing: a required input
    or combiner left unconnected.

    Raises:
        UnknownSubject: no such connection.

    """
    c = state.connection_json(connection_id)
    wiring = wiring_of(state, without=(c["source"], c["target"]))
    return [d for d in check_graph(wiring) if d.severity == "error"]


def plan_disconnect(state: SystemState, connection_id: str) -> Plan:
    """Plan the running system without connection ``connection_id``.

    Raises:
        UnknownSubject: no such connection.
        WiringError: the removal leaves a required terminal unconnected.

    """
    c = state.connection_json(connection_id)
    return build_plan(wiring_of(state, without=(c["source"], c["target"])))


def _server_yaml(s: ServerSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if s.kind == "python":
        out["python"] = s.entry
    else:
        out["command"] = list(s.argv)
        out["manifest"] = s.manifest.to_dict()
    out["cwd"] = s.cwd
    if s.env:
        out["env"] = dict(s.env)
    out["restart"] = s.restart
    out["backoff"] = {"initial": s.backoff_initial, "max": s.backoff_max}
    if s.depends_on:
        out["depends_on"] = list(s.depends_on)
    return out


def export_yaml(state: SystemState) -> str:
    """Return the running system as a wiring file (YAML) that lints clean and plans the same."""
    w = wiring_of(state)
    doc: dict[str, Any] = {"system": w.system}
    if w.python_path:
        doc["python_path"] = list(w.python_path)
    doc["servers"] = {s.name: _server_yaml(s) for s in w.servers}
    doc["connections"] = [
        {"from": ".".join(c.source), "to": ".".join(c.target), "slots": c.slots,
         "slot_size": c.slot_size, "lossy": c.lossy, "mode": f"{c.mode:04o}"}
        for c in w.connections
    ]
    header = (f"# Exported from the running system {w.system!r} "
              f"(connectome {state.system_json()['connectome']['id'][:12]}).\n")
    return header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=100)
