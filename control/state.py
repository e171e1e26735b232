"""The state machine: one source of truth for what exists and how it flows.

:class:`SystemState` holds the kernel, its servers (with their manifests and terminals), the
pipes and the connections, each with a lifecycle state from :mod:`control.state_model`. It is
built from a :class:`control.plan.Plan` (:meth:`SystemState.from_plan`) and then changed only
through its methods, which check the move, stamp an :class:`~control.state_model.Event` and
wake whoever waits for a change (the HMI's event stream).

Who calls what:

- the kernel/executor: :meth:`~SystemState.kernel_to` and :meth:`~SystemState.server_to`
  (with the pid when a process starts);
- the control surface, after the kernel carried out a modify:
  :meth:`~SystemState.add_connection` / :meth:`~SystemState.remove_connection`;
- the flow sampler (:mod:`control.state_flow`): :meth:`~SystemState.set_flow`.

Server moves drive connections: when a server leaves the up states its connections become
``broken``; when both ends are up again they are ``open``. Failed or backing-off servers make
a running kernel ``degraded`` until they are up again.

All methods are thread-safe (one lock); readers get JSON-able copies, never live objects.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from control.state_model import (
    CONNECTION,
    KERNEL,
    SERVER,
    SERVER_UP,
    Event,
    StateError,
    UnknownSubject,
    now,
)
from control.state_records import (
    ConnectionRecord,
    Flow,
    PipeRecord,
    ServerRecord,
    manifest_json,
    pipe_geometry,
    run_json,
    terminal_json,
)
from control.state_views import StateViews

__all__ = ["Flow", "SystemState"]

EVENT_LOG_SIZE = 10_000


class SystemState(StateViews):
    """The live state of one system: kernel, servers, terminals, pipes, connections, events.

    Args:
        system: the system's name.
        connectome_id: the plan's connectome ID (version 1).

    """

    def __init__(self, system: str, connectome_id: str = "") -> None:
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self.system = system
        self._kernel_state = KERNEL.initial
        self._kernel_since = now()
        self._started = self._kernel_since
        self._servers: dict[str, ServerRecord] = {}
        self._pipes: dict[str, PipeRecord] = {}
        self._connections: dict[str, ConnectionRecord] = {}
        self._events: deque[Event] = deque(maxlen=EVENT_LOG_SIZE)
        self._seq = 0
        self._revision = 0
        self._connectome_id = connectome_id
        self._connectome_version = 1
        self.start_order: tuple[str, ...] = ()

    # ---------------------------------------------------------------- building

    @classmethod
    def from_plan(cls, plan: Any) -> SystemState:
        """Build the initial state from a plan: servers ``declared``, connections ``planned``.

        Args:
            plan: a :class:`control.plan.Plan`.

        Returns:
            the new state, kernel ``booting``.

        """
        state = cls(plan.system, plan.connectome_id)
        state.start_order = tuple(plan.start_order)
        t = now()
        for s in plan.servers:
            terminals = {spec.name: terminal_json(spec) for spec in s.manifest.terminals}
            state._servers[s.name] = ServerRecord(
                name=s.name, kind=s.kind, manifest=manifest_json(s.manifest),
                terminals=terminals, run=run_json(s), planned=s, since=t,
            )
        for p in plan.pipes:
            state._pipes[p.name] = PipeRecord(p.name, pipe_geometry(p))
        for c in plan.connections:
            state._connections[c.id] = ConnectionRecord(c.id, c.source, c.target, c.pipe, since=t)
        with state._lock:
            state._record("connectome", plan.system, "", "planned",
                          f"plan {plan.connectome_id[:12]}")
        return state

    # ---------------------------------------------------------------- moves

    def _record(self, kind: str, subject: str, source: str, target: str, cause: str) -> Event:
        self._seq += 1
        event = Event(self._seq, now(), kind, subject, source, target, cause)
        self._events.append(event)
        self._bump()
        return event

    def _bump(self) -> None:
        self._revision += 1
        self._changed.notify_all()

    def kernel_to(self, target: str, cause: str) -> Event | None:
        """Move the kernel to ``target``; return the event (None if already there).

        Raises:
            IllegalTransition: the move is not in :data:`~control.state_model.KERNEL`.

        """
        with self._lock:
            return self._kernel_to(target, cause)

    def _kernel_to(self, target: str, cause: str) -> Event | None:
        if target == self._kernel_state:
            return None
        KERNEL.check(self.system, self._kernel_state, target)
        source, self._kernel_state, self._kernel_since = self._kernel_state, target, now()
        return self._record("kernel", self.system, source, target, cause)

    def server_to(self, name: str, target: str, cause: str, pid: int | None = None) -> Event | None:
        """Move server ``name`` to ``target``; connections and kernel follow.

        Args:
            name: the server.
            target: a :data:`~control.state_model.SERVER` state.
            cause: why, in words.
            pid: its process ID when it (re)starts.

        Returns:
            the event, or None if it already was in ``target``.

        Raises:
            UnknownSubject: no such server.
            IllegalTransition: the move is not in the table.

        """
        with self._lock:
            server = self._server(name)
            if target == server.state:
                return None
            SERVER.check(name, server.state, target)
            source, server.state, server.since = server.state, target, now()
            server.reason = cause
            if target == "starting":
                server.starts += 1
                server.pid = pid
            elif pid is not None:
                server.pid = pid
            if target not in SERVER_UP:
                server.pid = None
            event = self._record("server", name, source, target, cause)
            self._follow_server(name, target)
            return event

    def _follow_server(self, name: str, target: str) -> None:
        """Derive moves: connections at the server's terminals, and the kernel's health."""
        for c in self._connections.values():
            ends = (c.source.split(".", 1)[0], c.target.split(".", 1)[0])
            if name not in ends or c.state == "closed":
                continue
            if target not in SERVER_UP and c.state != "broken" and c.state != "planned":
                self._connection_to(c, "broken", f"server {name} {target}")
            elif (target in ("ready", "running") and c.state == "broken"
                  and c.pipe in self._pipes and all(
                      self._servers[e].state in SERVER_UP for e in ends if e in self._servers)):
                self._connection_to(c, "open", f"server {name} {target}")
        unhealthy = any(s.state in ("failed", "backoff") for s in self._servers.values())
        if unhealthy and self._kernel_state == "running":
            self._kernel_to("degraded", f"server {name} {target}")
        elif not unhealthy and self._kernel_state == "degraded":
            self._kernel_to("running", f"server {name} {target}")

    def connection_to(self, conn_id: str, target: str, cause: str) -> Event | None:
        """Move connection ``conn_id`` to ``target``; return the event (None if no move).

        Raises:
            UnknownSubject: no such connection.
            IllegalTransition: the move is not in :data:`~control.state_model.CONNECTION`.

        """
        with self._lock:
            return self._connection_to(self._connection(conn_id), target, cause)

    def _connection_to(self, c: ConnectionRecord, target: str, cause: str) -> Event | None:
        if target == c.state:
            return None
        CONNECTION.check(c.id, c.state, target)
        source, c.state, c.since = c.state, target, now()
        return self._record("connection", c.id, source, target, cause)

    def open_pipes(self, cause: str = "kernel: pipes created") -> None:
        """Mark every planned connection ``open`` (the kernel created all pipes)."""
        with self._lock:
            for c in self._connections.values():
                if c.state == "planned":
                    self._connection_to(c, "open", cause)

    # ---------------------------------------------------------------- structure

    def add_connection(self, conn: Any, pipe: Any, cause: str) -> dict[str, Any]:
        """Record a connection made at run time (its pipe exists already).

        Args:
            conn: a :class:`control.plan.PlannedConnection` (id, source, target, pipe).
            pipe: its :class:`control.plan.PlannedPipe` (shared pipes are kept as they are).
            cause: why, in words.

        Returns:
            the new connection as JSON.

        Raises:
            StateError: the connection ID exists already.

        """
        with self._lock:
            if conn.id in self._connections:
                raise StateError(f"connection {conn.id!r} exists already")
            if pipe.name not in self._pipes:
                self._pipes[pipe.name] = PipeRecord(pipe.name, pipe_geometry(pipe))
            c = ConnectionRecord(conn.id, conn.source, conn.target, conn.pipe, since=now())
            self._connections[conn.id] = c
            self._connectome_changed()
            self._record("connectome", conn.id, "", "connected",
                         f"{cause}: {conn.source} -> {conn.target}")
            ends = (conn.source.split(".", 1)[0], conn.target.split(".", 1)[0])
            up = all(self._servers[e].state in SERVER_UP for e in ends if e in self._servers)
            self._connection_to(c, "open" if up else "broken", cause)
            return self._connection_json(c)

    def remove_connection(self, conn_id: str, cause: str) -> dict[str, Any]:
        """Close and forget a connection; its pipe goes when no connection uses it.

        Returns:
            the connection as JSON, state ``closed``.

        Raises:
            UnknownSubject: no such connection.

        """
        with self._lock:
            c = self._connection(conn_id)
            self._connection_to(c, "closed", cause)
            del self._connections[conn_id]
            if not any(o.pipe == c.pipe for o in self._connections.values()):
                self._pipes.pop(c.pipe, None)
            self._connectome_changed()
            self._record("connectome", conn_id, "", "disconnected", cause)
            return self._connection_json(c)

    def _connectome_changed(self) -> None:
        # The new ID comes from re-planning the running system (set_connectome_id); until
        # then the version alone says the connectome changed.
        self._connectome_version += 1

    def set_connectome_id(self, connectome_id: str) -> None:
        """Replace the connectome ID (e.g. with the one a re-plan of the export gives)."""
        with self._lock:
            self._connectome_id = connectome_id
            self._bump()

    # ---------------------------------------------------------------- flow

    def set_flow(self, conn_id: str, flow: Flow, target: str | None, cause: str) -> None:
        """Store a connection's sampled flow and, if given, move it (flow-driven states).

        Flow never overrides ``planned``, ``broken`` or ``closed``: those follow the servers
        and the structure. A connection that is gone is ignored (it raced a disconnect).
        """
        with self._lock:
            c = self._connections.get(conn_id)
            if c is None:
                return
            c.flow = flow
            if target is not None and c.state in ("open", "flowing", "stalled"):
                self._connection_to(c, target, cause)

    def set_pipe_stats(self, name: str, stats: dict[str, Any]) -> None:
        """Store the latest raw statistics of pipe ``name`` (ignored if it is gone)."""
        with self._lock:
            p = self._pipes.get(name)
            if p is not None:
                p.stats = stats

    def tick(self) -> None:
        """Announce that a sampling round finished (wakes the live stream once)."""
        with self._lock:
            self._bump()

    # ---------------------------------------------------------------- lookups

    def _server(self, name: str) -> ServerRecord:
        try:
            return self._servers[name]
        except KeyError:
            raise UnknownSubject("server", name) from None

    def _connection(self, conn_id: str) -> ConnectionRecord:
        try:
            return self._connections[conn_id]
        except KeyError:
            raise UnknownSubject("connection", conn_id) from None

    @property
    def revision(self) -> int:
        """A counter that grows on every change, flow ticks included."""
        return self._revision

    @property
    def kernel_state(self) -> str:
        """The kernel's lifecycle state."""
        return self._kernel_state

    def wait_change(self, revision: int, timeout: float) -> int:
        """Block until :attr:`revision` differs from ``revision`` or ``timeout`` passes.

        Returns:
            the current revision.

        """
        with self._changed:
            self._changed.wait_for(lambda: self._revision != revision, timeout=timeout)
            return self._revision

    def pipe_names(self) -> list[str]:
        """Return the names of the pipes in use, sorted."""
        with self._lock:
            return sorted(self._pipes)

    def pipe_geometry(self, name: str) -> dict[str, Any]:
        """Return pipe ``name``'s geometry (shape, slot_size, slots, lossy, ...).

        Raises:
            UnknownSubject: no such pipe.

        """
        with self._lock:
            try:
                return dict(self._pipes[name].geometry)
            except KeyError:
                raise UnknownSubject("pipe", name) from None

    def pipes_with_connections(self) -> dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]:
        """Return ``{pipe: (geometry, [its connections])}`` in one pass (the sampler's view)."""
        with self._lock:
            out: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {
                n: (dict(p.geometry), []) for n, p in sorted(self._pipes.items())}
            for k in sorted(self._connections):
                c = self._connections[k]
                if c.pipe in out:
                    out[c.pipe][1].append({"id": c.id, "source": c.source, "target": c.target,
                                           "pipe": c.pipe, "state": c.state})
            return out

    def connections_of_pipe(self, name: str) -> list[dict[str, Any]]:
        """Return the connections a pipe carries, as JSON, sorted by ID."""
        with self._lock:
            return [self._connection_json(c) for c in sorted(
                self._connections.values(), key=lambda c: c.id) if c.pipe == name]

    def server_pids(self) -> dict[str, int]:
        """Return ``{server: pid}`` for servers whose process is known."""
        with self._lock:
            return {n: s.pid for n, s in self._servers.items() if s.pid is not None}

    def structure(self) -> tuple[list[Any], list[tuple[str, str, dict[str, Any]]]]:
        """Return what a wiring needs: planned servers and ``(source, target, geometry)``.

        Both sorted (servers by name, connections by source then target), so whatever is
        built from them is deterministic.
        """
        with self._lock:
            servers = [self._servers[n].planned for n in sorted(self._servers)]
            conns = sorted((c.source, c.target, dict(self._pipes[c.pipe].geometry))
                           for c in self._connections.values())
            return servers, conns

    def server_record(self, name: str) -> dict[str, Any]:
        """Return one server's manifest, terminals and run settings (for checks and export).

        Raises:
            UnknownSubject: no such server.

        """
        with self._lock:
            s = self._server(name)
            return {"name": s.name, "kind": s.kind, "manifest": dict(s.manifest),
                    "terminals": {k: dict(v) for k, v in s.terminals.items()},
                    "run": dict(s.run), "state": s.state}
