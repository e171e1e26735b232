"""The records the state machine keeps: live flow, and its private per-item records.

:class:`Flow` is public (the sampler builds it, the API serves it). ``ServerRecord``,
``PipeRecord`` and ``ConnectionRecord`` are the mutable rows :class:`control.state.SystemState`
keeps under its lock; nobody else holds them. The ``*_json`` helpers turn plan records
(manifests, terminals, pipes, servers) into the JSON the API serves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from control.state_model import CONNECTION, SERVER

__all__ = ["ConnectionRecord", "Flow", "PipeRecord", "ServerRecord"]


@dataclass(frozen=True)
class Flow:
    """Live flow of one connection, as last sampled from its pipe's statistics.

    Attributes:
        messages: messages carried so far on this connection.
        bytes: payload bytes carried so far.
        msgs_per_s: messages per second over the last sampling interval.
        bytes_per_s: bytes per second over the last sampling interval.
        fill_pct: how full the pipe (or, fan-out, this reader's backlog) is, 0-100.
        drops: messages this connection lost (lossy pipes only).
        writer_waits: times a writer had to wait for room (back-pressure), cumulative.
        time: when it was sampled (epoch seconds); 0 if never.

    """

    messages: int = 0
    bytes: int = 0
    msgs_per_s: float = 0.0
    bytes_per_s: float = 0.0
    fill_pct: float = 0.0
    drops: int = 0
    writer_waits: int = 0
    time: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """Return the flow as a JSON-able dict (rates rounded for display)."""
        return {
            "messages": self.messages, "bytes": self.bytes,
            "msgs_per_s": round(self.msgs_per_s, 3), "bytes_per_s": round(self.bytes_per_s, 3),
            "fill_pct": round(self.fill_pct, 3), "drops": self.drops,
            "writer_waits": self.writer_waits, "time": round(self.time, 6),
        }


@dataclass
class ServerRecord:
    """One server's row (mutable, guarded by the state's lock)."""

    name: str
    kind: str
    manifest: dict[str, Any]
    terminals: dict[str, dict[str, Any]]
    run: dict[str, Any]
    planned: Any = None  # the PlannedServer it came from (for checks and export)
    state: str = SERVER.initial
    since: float = 0.0
    pid: int | None = None
    starts: int = 0
    reason: str = ""  # the cause of its last move, e.g. why it failed


@dataclass
class PipeRecord:
    """One pipe's row (mutable, guarded by the state's lock)."""

    name: str
    geometry: dict[str, Any]
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class ConnectionRecord:
    """One connection's row (mutable, guarded by the state's lock)."""

    id: str
    source: str
    target: str
    pipe: str
    state: str = CONNECTION.initial
    since: float = 0.0
    flow: Flow = field(default_factory=Flow)


def terminal_json(spec: Any) -> dict[str, Any]:
    shape = getattr(spec, "shape", None)
    return {
        "direction": spec.direction,
        "message_size": int(spec.message_size),
        "dtype": getattr(spec, "dtype", None),
        "shape": list(shape) if shape is not None else None,
        "required": bool(getattr(spec, "required", False)),
    }


def manifest_json(m: Any) -> dict[str, Any]:
    return {
        "servername": m.servername, "class_hex": m.class_hex, "owner": m.owner,
        "auth_flag": int(m.auth_flag), "auth_mechanism": m.auth_mechanism,
    }


def pipe_geometry(p: Any) -> dict[str, Any]:
    return {
        "shape": p.shape, "slot_size": int(p.slot_size), "slots": int(p.slots),
        "lossy": bool(p.lossy), "mode": int(getattr(p, "mode", 0o600)),
        "max_readers": int(p.max_readers), "max_writers": int(p.max_writers),
    }


def run_json(s: Any) -> dict[str, Any]:
    """Keep what the executor needs to run a server again (for export)."""
    out: dict[str, Any] = {
        "kind": s.kind, "restart": s.restart,
        "backoff_initial": float(s.backoff_initial), "backoff_max": float(s.backoff_max),
        "depends_on": list(s.depends_on),
    }
    if s.kind == "python":
        out["entry"] = s.entry
    else:
        out["argv"] = list(s.argv)
        out["cwd"] = getattr(s, "cwd", None)
        out["env"] = dict(sorted((getattr(s, "env", None) or {}).items()))
    return out
