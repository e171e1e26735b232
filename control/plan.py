"""The plan: the resolved, deterministic form of a wiring file.

``build_plan(wiring)`` gives pipe names and geometry, stable connection IDs, the servers
with the terminal bindings and environment each gets, and the start order.
``Plan.to_json()`` is canonical (sorted keys, fixed formatting, no set or dict-order
dependence), so the same file gives the same bytes across runs and ``PYTHONHASHSEED``
values; ``Plan.from_json`` reads it back to an equal :class:`Plan`.

Names and IDs:

- a pipe is named ``<system>.<server>.<terminal>`` after the terminal that owns it (the
  multiplexer, the combiner, or the plain output of a one-to-one connection);
- a connection ID is ``c-`` + the first 12 hex digits of sha256 of ``src.term->dst.term``;
- the connectome ID is the sha256 of the canonical JSON of the graph: system, servers
  with their manifests, pipes and connections (not commands, restart policy or env).

Every server's environment holds ``PYKERNEL_SYSTEM``, ``PYKERNEL_SERVER``,
``PYKERNEL_CONNECTOME`` and ``PYKERNEL_TERMINALS`` (canonical JSON
``{terminal: {pipe, role, direction, message_size, dtype, shape}}``), plus the file's
``env`` and, when ``python_path`` is set, ``PYTHONPATH``. The kernel adds
``PYKERNEL_NOTIFY_FD`` at run time.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
from dataclasses import dataclass
from typing import Any

from control.errors import PlanError, WiringError
from control.lint import check_graph, group_pipes, load_checked, pipe_owner
from control.manifest import DIRECTIONS, Manifest, TerminalSpec, check_manifest
from control.wiring import RESTART_POLICIES, ServerSpec, Wiring

PLAN_VERSION = 1
"""Format version written into the plan's JSON."""
PIPE_SHAPES = ("one", "multiplexer", "combiner")
"""Pipe shapes: 1:1, fan-out, fan-in."""


def canonical_json(data: Any, indent: int | None = None) -> str:
    """Serialize ``data`` canonically: sorted keys, ASCII only, fixed separators."""
    separators = (",", ": ") if indent is not None else (",", ":")
    return json.dumps(data, sort_keys=True, ensure_ascii=True, indent=indent,
                      separators=separators, allow_nan=False)


def connection_id(source: str, target: str) -> str:
    """Return the stable ID of the connection ``source -> target`` (``server.terminal``)."""
    return "c-" + hashlib.sha256(f"{source}->{target}".encode()).hexdigest()[:12]


@dataclass(frozen=True)
class PlannedPipe:
    """One shared-memory pipe the kernel creates.

    Attributes:
        name: shared-memory name ``<system>.<server>.<terminal>`` (``[A-Za-z0-9_.-]``).
        shape: ``one``, ``multiplexer`` or ``combiner``.
        slot_size: bytes per slot.
        slots: ring slots (a power of two).
        lossy: overwrite-and-count-drops mode.
        mode: permission bits of the shared-memory object.
        max_readers: reader limit (connected readers; 1 for ``one``/``combiner``).
        max_writers: writer limit (connected writers; 1 for ``one``/``multiplexer``).

    """

    name: str
    shape: str
    slot_size: int
    slots: int
    lossy: bool
    mode: int
    max_readers: int
    max_writers: int


@dataclass(frozen=True)
class PlannedConnection:
    """One connection and the pipe that carries it.

    Attributes:
        id: stable ID, see :func:`connection_id`.
        source: ``server.terminal`` that writes.
        target: ``server.terminal`` that reads.
        pipe: name of the carrying pipe.

    """

    id: str
    source: str
    target: str
    pipe: str


@dataclass(frozen=True)
class TerminalBinding:
    """How one terminal of a server attaches to its pipe.

    Attributes:
        pipe: pipe name.
        role: ``writer`` or ``reader``.
        direction: the terminal's direction.
        message_size: the terminal's largest message.
        dtype: numpy dtype, or None.
        shape: array shape, or None.

    """

    pipe: str
    role: str
    direction: str
    message_size: int
    dtype: str | None
    shape: tuple[int, ...] | None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form (also the value in ``PYKERNEL_TERMINALS``)."""
        return {"pipe": self.pipe, "role": self.role, "direction": self.direction,
                "message_size": self.message_size, "dtype": self.dtype,
                "shape": list(self.shape) if self.shape is not None else None}


@dataclass(frozen=True)
class PlannedServer:
    """One server to start.

    Attributes:
        name: instance name.
        manifest: its manifest.
        kind: ``python`` or ``command``.
        entry: ``module:callable`` for python servers, else None.
        argv: the command (empty for python servers: the executor launches
            ``python -m pykernel.server ENTRY``).
        cwd: absolute working directory.
        env: the full environment the plan gives it (a dict in sorted key order), merged
            over the kernel's own by the executor.
        restart: ``never``, ``on-failure`` or ``always``.
        backoff_initial: first restart delay (s).
        backoff_max: restart delay cap (s).
        depends_on: servers that must be ready first.
        terminals: terminal name -> binding (sorted); a terminal with no connection is
            absent.

    """

    name: str
    manifest: Manifest
    kind: str
    entry: str | None
    argv: tuple[str, ...]
    cwd: str
    env: dict[str, str]
    restart: str
    backoff_initial: float
    backoff_max: float
    depends_on: tuple[str, ...]
    terminals: dict[str, TerminalBinding]


@dataclass(frozen=True)
class Plan:
    """The resolved system.

    Attributes:
        system: system name.
        connectome_id: hex sha256 of the canonical graph.
        pipes: pipes sorted by name.
        connections: connections sorted by source, then target.
        servers: servers sorted by name.
        start_order: server names, dependencies first (ties by name).

    """

    system: str
    connectome_id: str
    pipes: tuple[PlannedPipe, ...]
    connections: tuple[PlannedConnection, ...]
    servers: tuple[PlannedServer, ...]
    start_order: tuple[str, ...]

    def server(self, name: str) -> PlannedServer:
        """Return the planned server called ``name``.

        Raises:
            KeyError: no such server.

        """
        for server in self.servers:
            if server.name == name:
                return server
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """Return the plain-JSON form."""
        return {
            "version": PLAN_VERSION,
            "system": self.system,
            "connectome_id": self.connectome_id,
            "pipes": [_pipe_dict(p) for p in self.pipes],
            "connections": [_conn_dict(c) for c in self.connections],
            "servers": [_server_dict(s) for s in self.servers],
            "start_order": list(self.start_order),
        }

    def to_json(self) -> str:
        """Return the canonical JSON text: one line, sorted keys, ASCII, trailing newline.

        Compact on purpose: the C encoder is used (an indented dump of a 1,000-server plan
        takes the pure-Python path, 5x slower). Pipe it through ``jq`` to read it.
        """
        return canonical_json(self.to_dict()) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Plan:
        """Read a plan written by :meth:`to_json`.

        Raises:
            PlanError: bad JSON, a wrong type or a missing field (named).

        """
        try:
            data = json.loads(text)
        except (ValueError, TypeError) as exc:
            raise PlanError(f"plan is not valid JSON: {exc}") from exc
        return _plan_from_dict(data)


def _pipe_dict(p: PlannedPipe) -> dict[str, Any]:
    return {"name": p.name, "shape": p.shape, "slot_size": p.slot_size, "slots": p.slots,
            "lossy": p.lossy, "mode": p.mode, "max_readers": p.max_readers,
            "max_writers": p.max_writers}


def _conn_dict(c: PlannedConnection) -> dict[str, Any]:
    return {"id": c.id, "source": c.source, "target": c.target, "pipe": c.pipe}


def _server_dict(s: PlannedServer) -> dict[str, Any]:
    return {
        "name": s.name, "manifest": s.manifest.to_dict(), "kind": s.kind, "entry": s.entry,
        "argv": list(s.argv), "cwd": s.cwd, "env": dict(s.env), "restart": s.restart,
        "backoff_initial": s.backoff_initial, "backoff_max": s.backoff_max,
        "depends_on": list(s.depends_on),
        "terminals": {name: b.to_dict() for name, b in s.terminals.items()},
    }


def build_plan(wiring: Wiring | str | os.PathLike[str]) -> Plan:
    """Resolve a wiring file (or a lint-clean :class:`Wiring`) into a :class:`Plan`.

    Args:
        wiring: a path (linted first), or a :class:`Wiring` (its graph rules are checked).

    Raises:
        WiringError: the file or wiring has lint errors (all of them carried).

    """
    if not isinstance(wiring, Wiring):
        wiring = load_checked(wiring)
    else:
        # A Wiring built in code (e.g. the running system re-planned) gets the graph rules.
        errors = [d for d in check_graph(wiring) if d.severity == "error"]
        if errors:
            raise WiringError(sorted(errors, key=lambda d: (d.line, d.column, d.field)))
    valid = []
    for conn in wiring.connections:
        src = wiring.server(conn.source[0]).manifest.terminal(conn.source[1])  # type: ignore[union-attr]
        dst = wiring.server(conn.target[0]).manifest.terminal(conn.target[1])  # type: ignore[union-attr]
        assert src is not None and dst is not None  # guaranteed by check_graph
        valid.append((conn, src, dst))
    groups = group_pipes(wiring, valid, [])
    pipe_of: dict[tuple[str, str], str] = {}
    pipes = []
    for group in groups:
        name = f"{wiring.system}.{group.owner[0]}.{group.owner[1]}"
        pipe_of[group.owner] = name
        fan = len(group.connections)
        pipes.append(PlannedPipe(
            name, group.shape, group.slot_size, group.slots, group.lossy, group.mode,
            max_readers=fan if group.shape == "multiplexer" else 1,
            max_writers=fan if group.shape == "combiner" else 1))
    connections = []
    bindings: dict[str, dict[str, TerminalBinding]] = {s.name: {} for s in wiring.servers}
    for conn, src, dst in valid:
        owner, _ = pipe_owner(conn, src, dst)
        pipe = pipe_of[owner]
        source, target = ".".join(conn.source), ".".join(conn.target)
        connections.append(PlannedConnection(connection_id(source, target), source, target,
                                             pipe))
        bindings[conn.source[0]][conn.source[1]] = _binding(pipe, "writer", src)
        bindings[conn.target[0]][conn.target[1]] = _binding(pipe, "reader", dst)
    pipes.sort(key=lambda p: p.name)
    connections.sort(key=lambda c: (c.source, c.target))
    connectome = _connectome_id(wiring, pipes, connections)
    servers = sorted((_server(wiring, s, bindings[s.name], connectome) for s in wiring.servers),
                     key=lambda s: s.name)
    return Plan(wiring.system, connectome, tuple(pipes), tuple(connections), tuple(servers),
                start_order(wiring))


def _binding(pipe: str, role: str, spec: TerminalSpec) -> TerminalBinding:
    return TerminalBinding(pipe, role, spec.direction, spec.message_size, spec.dtype, spec.shape)


def _connectome_id(wiring: Wiring, pipes: list[PlannedPipe],
                   connections: list[PlannedConnection]) -> str:
    graph = {
        "system": wiring.system,
        "servers": {s.name: s.manifest.to_dict() for s in wiring.servers},
        "pipes": [_pipe_dict(p) for p in pipes],
        "connections": [_conn_dict(c) for c in connections],
    }
    return hashlib.sha256(canonical_json(graph).encode()).hexdigest()


def _server(wiring: Wiring, spec: ServerSpec, bound: dict[str, TerminalBinding],
            connectome: str) -> PlannedServer:
    terminals = dict(sorted(bound.items()))
    env = dict(spec.env)
    if wiring.python_path:
        env["PYTHONPATH"] = os.pathsep.join(
            [*wiring.python_path, *([env["PYTHONPATH"]] if "PYTHONPATH" in env else [])])
    env.update({
        "PYKERNEL_SYSTEM": wiring.system,
        "PYKERNEL_SERVER": spec.name,
        "PYKERNEL_CONNECTOME": connectome,
        "PYKERNEL_TERMINALS": canonical_json({n: b.to_dict() for n, b in terminals.items()}),
    })
    return PlannedServer(spec.name, spec.manifest, spec.kind, spec.entry, spec.argv, spec.cwd,
                         dict(sorted(env.items())), spec.restart, spec.backoff_initial,
                         spec.backoff_max, spec.depends_on, terminals)


def start_order(wiring: Wiring) -> tuple[str, ...]:
    """Order servers so each starts after its ``depends_on``; ties go by name."""
    deps = {s.name: set(s.depends_on) for s in wiring.servers}
    users: dict[str, list[str]] = {name: [] for name in deps}
    for name, needs in deps.items():
        for dep in needs:
            users[dep].append(name)
    ready = [name for name, needs in deps.items() if not needs]
    heapq.heapify(ready)
    order = []
    while ready:
        name = heapq.heappop(ready)
        order.append(name)
        for user in users[name]:
            deps[user].discard(name)
            if not deps[user]:
                heapq.heappush(ready, user)
    return tuple(order)


# --- reading a plan back --------------------------------------------------------------


def _get(data: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(data, dict):
        raise PlanError(f"{where}: expected an object, got {type(data).__name__}")
    if key not in data:
        raise PlanError(f"{where}: missing field {key!r}")
    value = data[key]
    bad_bool = isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple)
                                                         else (kind,))
    if not isinstance(value, kind) or bad_bool:
        raise PlanError(f"{where}.{key}: wrong type {type(value).__name__}")
    return value


def _choice(data: Any, key: str, choices: tuple[str, ...], where: str) -> str:
    value = _get(data, key, str, where)
    if value not in choices:
        raise PlanError(f"{where}.{key}: {value!r} is not one of {', '.join(choices)}")
    return value


def _seconds(data: Any, key: str, where: str) -> float:
    value = _get(data, key, (int, float), where)
    if not 0 < value <= 3600:
        raise PlanError(f"{where}.{key}: {value!r} is not a delay in (0, 3600] seconds")
    return float(value)


def _shape(value: Any, where: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(d, int) for d in value):
        raise PlanError(f"{where}: shape must be a list of integers or null")
    return tuple(value)


def _plan_from_dict(data: Any) -> Plan:
    if _get(data, "version", int, "plan") != PLAN_VERSION:
        raise PlanError(f"plan.version: unsupported version {data['version']!r}")
    pipes = []
    for i, p in enumerate(_get(data, "pipes", list, "plan")):
        w = f"plan.pipes[{i}]"
        pipes.append(PlannedPipe(
            _get(p, "name", str, w), _choice(p, "shape", PIPE_SHAPES, w),
            _get(p, "slot_size", int, w),
            _get(p, "slots", int, w), _get(p, "lossy", bool, w), _get(p, "mode", int, w),
            _get(p, "max_readers", int, w), _get(p, "max_writers", int, w)))
    conns = []
    for i, c in enumerate(_get(data, "connections", list, "plan")):
        w = f"plan.connections[{i}]"
        conns.append(PlannedConnection(_get(c, "id", str, w), _get(c, "source", str, w),
                                       _get(c, "target", str, w), _get(c, "pipe", str, w)))
    servers = [_server_from_dict(s, f"plan.servers[{i}]")
               for i, s in enumerate(_get(data, "servers", list, "plan"))]
    order = _get(data, "start_order", list, "plan")
    if not all(isinstance(n, str) for n in order):
        raise PlanError("plan.start_order: expected a list of strings")
    return Plan(_get(data, "system", str, "plan"), _get(data, "connectome_id", str, "plan"),
                tuple(pipes), tuple(conns), tuple(servers), tuple(order))


def _server_from_dict(s: Any, w: str) -> PlannedServer:
    built, problems = check_manifest(_get(s, "manifest", dict, w))
    if built is None:
        raise PlanError(f"{w}.manifest: {problems[0].message}")
    terminals = []
    for name, b in sorted(_get(s, "terminals", dict, w).items()):
        tw = f"{w}.terminals.{name}"
        dtype = b.get("dtype") if isinstance(b, dict) else None
        if dtype is not None and not isinstance(dtype, str):
            raise PlanError(f"{tw}.dtype: wrong type {type(dtype).__name__}")
        terminals.append((name, TerminalBinding(
            _get(b, "pipe", str, tw), _choice(b, "role", ("writer", "reader"), tw),
            _choice(b, "direction", DIRECTIONS, tw),
            _get(b, "message_size", int, tw), dtype, _shape(b.get("shape"), f"{tw}.shape"))))
    env = _get(s, "env", dict, w)
    if not all(isinstance(v, str) for v in env.values()):
        raise PlanError(f"{w}.env: values must be strings")
    argv, deps = _get(s, "argv", list, w), _get(s, "depends_on", list, w)
    if not all(isinstance(a, str) for a in [*argv, *deps]):
        raise PlanError(f"{w}: argv and depends_on must be lists of strings")
    entry = s.get("entry")
    if entry is not None and not isinstance(entry, str):
        raise PlanError(f"{w}.entry: wrong type {type(entry).__name__}")
    return PlannedServer(
        _get(s, "name", str, w), built, _choice(s, "kind", ("python", "command"), w), entry,
        tuple(argv), _get(s, "cwd", str, w), dict(sorted(env.items())),
        _choice(s, "restart", RESTART_POLICIES, w), _seconds(s, "backoff_initial", w),
        _seconds(s, "backoff_max", w), tuple(deps), dict(terminals))
