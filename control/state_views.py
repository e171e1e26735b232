"""The JSON views of :class:`control.state.SystemState`: what the surface and the HMI read.

A mixin over the state's records and lock: every view takes the lock and returns a
JSON-able copy, never a live object.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from control.state_model import Event
from control.state_records import (
    ConnectionRecord,
    PipeRecord,
    ServerRecord,
)


class StateViews:
    """JSON views of the system state (mixed into :class:`control.state.SystemState`)."""

    # Kept by SystemState (see its __init__); the views only read them, under the lock.
    system: str
    _lock: threading.RLock
    _servers: dict[str, ServerRecord]
    _connections: dict[str, ConnectionRecord]
    _pipes: dict[str, PipeRecord]
    _events: deque[Event]
    _seq: int
    _kernel_state: str
    _kernel_since: float
    _started: float
    _connectome_id: str
    _connectome_version: int

    def _server(self, name: str) -> ServerRecord:
        raise NotImplementedError  # SystemState's lookup (raises UnknownSubject)

    def _connection(self, conn_id: str) -> ConnectionRecord:
        raise NotImplementedError  # SystemState's lookup (raises UnknownSubject)


    def system_json(self) -> dict[str, Any]:
        """Return the system summary: kernel state, counts by state, connectome."""
        with self._lock:
            by_server: dict[str, int] = {}
            for s in self._servers.values():
                by_server[s.state] = by_server.get(s.state, 0) + 1
            by_conn: dict[str, int] = {}
            for c in self._connections.values():
                by_conn[c.state] = by_conn.get(c.state, 0) + 1
            return {
                "system": self.system, "state": self._kernel_state,
                "since": round(self._kernel_since, 6), "started": round(self._started, 6),
                "servers": len(self._servers), "connections": len(self._connections),
                "pipes": len(self._pipes), "servers_by_state": by_server,
                "connections_by_state": by_conn, "connectome": self._connectome_json(),
                "last_event": self._seq,
            }

    def _connectome_json(self) -> dict[str, Any]:
        return {"id": self._connectome_id, "version": self._connectome_version}

    def connectome_json(self) -> dict[str, Any]:
        """Return the connectome: its ID and version, servers, terminals, connections."""
        with self._lock:
            out = self._connectome_json()
            out["system"] = self.system
            out["servers"] = self._servers_json()
            for server in out["servers"]:
                specs = self._servers[server["name"]].terminals
                server["terminals"] = [{"name": t, **specs[t]} for t in server["terminals"]]
            out["connections"] = self._connections_json()
            out["pipes"] = {n: dict(p.geometry) for n, p in sorted(self._pipes.items())}
            return out

    def _server_json(self, s: ServerRecord) -> dict[str, Any]:
        return {
            "name": s.name, "state": s.state, "since": round(s.since, 6), "pid": s.pid,
            "starts": s.starts, "kind": s.kind, "manifest": dict(s.manifest),
            "terminals": sorted(s.terminals), "restart": s.run.get("restart"),
            "reason": s.reason,
        }

    def _servers_json(self) -> list[dict[str, Any]]:
        return [self._server_json(self._servers[n]) for n in sorted(self._servers)]

    def servers_json(self) -> list[dict[str, Any]]:
        """Return every server (state, since, pid, starts, manifest), sorted by name."""
        with self._lock:
            return self._servers_json()

    def server_json(self, name: str) -> dict[str, Any]:
        """Return one server with its terminals in full.

        Raises:
            UnknownSubject: no such server.

        """
        with self._lock:
            s = self._server(name)
            out = self._server_json(s)
            out["terminals"] = [t for t in self._terminals_json() if t["server"] == name]
            return out

    def _terminals_json(self) -> list[dict[str, Any]]:
        ends: dict[str, list[tuple[str, str, str]]] = {}
        for c in self._connections.values():
            ends.setdefault(c.source, []).append((c.id, c.pipe, "writer"))
            ends.setdefault(c.target, []).append((c.id, c.pipe, "reader"))
        out = []
        for n in sorted(self._servers):
            for t, spec in sorted(self._servers[n].terminals.items()):
                tid = f"{n}.{t}"
                mine = sorted(ends.get(tid, []))
                out.append({
                    "id": tid, "server": n, "terminal": t, **spec,
                    "connections": [m[0] for m in mine],
                    "pipe": mine[0][1] if mine else None,
                    "role": mine[0][2] if mine else None,
                })
        return out

    def terminals_json(self) -> list[dict[str, Any]]:
        """Return every terminal with its direction, sizes, pipe, role and connection IDs."""
        with self._lock:
            return self._terminals_json()

    def _connection_json(self, c: ConnectionRecord) -> dict[str, Any]:
        return {
            "id": c.id, "source": c.source, "target": c.target, "pipe": c.pipe,
            "state": c.state, "since": round(c.since, 6), "flow": c.flow.to_json(),
        }

    def _connections_json(self) -> list[dict[str, Any]]:
        return [self._connection_json(self._connections[k]) for k in sorted(self._connections)]

    def connections_json(self) -> list[dict[str, Any]]:
        """Return every connection with its state and live flow, sorted by ID."""
        with self._lock:
            return self._connections_json()

    def connection_json(self, conn_id: str) -> dict[str, Any]:
        """Return one connection.

        Raises:
            UnknownSubject: no such connection.

        """
        with self._lock:
            return self._connection_json(self._connection(conn_id))

    def pipes_json(self) -> list[dict[str, Any]]:
        """Return every pipe: geometry, the connections it carries, latest raw statistics."""
        with self._lock:
            carried: dict[str, list[str]] = {}
            for c in self._connections.values():
                carried.setdefault(c.pipe, []).append(c.id)
            return [{"name": p.name, **p.geometry, "connections": sorted(carried.get(n, [])),
                     "stats": dict(p.stats)} for n, p in sorted(self._pipes.items())]

    def events_json(self, since: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Return up to ``limit`` events with ``seq > since``, oldest first."""
        with self._lock:
            out = [e.to_json() for e in self._events if e.seq > since]
            return out[:limit] if limit >= 0 else out

    def events(self) -> list[Event]:
        """Return the retained events (the last :data:`EVENT_LOG_SIZE`), oldest first."""
        with self._lock:
            return list(self._events)
