"""``GET /metrics``: the state in Prometheus text exposition format (version 0.0.4)."""

from __future__ import annotations

from collections.abc import Iterable

from control.state import SystemState
from control.state_model import CONNECTION, KERNEL, SERVER


def _label(value: object) -> str:
    text = str(value)
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: dict[str, object]) -> str:
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in pairs.items()) + "}"


class _Out:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str,
               samples: Iterable[tuple[dict[str, object], float]]) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            number = repr(float(value)) if isinstance(value, float) else str(int(value))
            self.lines.append(f"{name}{_labels(labels)} {number}")


def render(state: SystemState) -> str:
    """Return the metrics text: kernel, server and connection states, flow and pipe counters."""
    system = state.system_json()
    servers = state.servers_json()
    conns = state.connections_json()
    pipes = state.pipes_json()
    out = _Out()
    sysname = system["system"]
    out.family("pykernel_kernel_state", "gauge", "1 for the kernel's current state.",
               (({"system": sysname, "state": s}, int(system["state"] == s))
                for s in KERNEL.states))
    out.family("pykernel_server_state", "gauge", "1 for each server's current state.",
               (({"server": sv["name"], "state": s}, int(sv["state"] == s))
                for sv in servers for s in SERVER.states))
    out.family("pykernel_server_starts_total", "counter", "Times the server was started.",
               (({"server": sv["name"]}, sv["starts"]) for sv in servers))
    out.family("pykernel_connection_state", "gauge", "1 for each connection's current state.",
               (({"connection": c["id"], "state": s}, int(c["state"] == s))
                for c in conns for s in CONNECTION.states))

    def per_conn(key: str) -> Iterable[tuple[dict[str, object], float]]:
        for c in conns:
            labels = {"connection": c["id"], "source": c["source"], "target": c["target"],
                      "pipe": c["pipe"]}
            yield labels, c["flow"][key]

    out.family("pykernel_connection_messages_total", "counter",
               "Messages carried by the connection.", per_conn("messages"))
    out.family("pykernel_connection_bytes_total", "counter",
               "Payload bytes carried by the connection.", per_conn("bytes"))
    out.family("pykernel_connection_drops_total", "counter",
               "Messages the connection lost (lossy pipes).", per_conn("drops"))
    out.family("pykernel_connection_writer_waits_total", "counter",
               "Times a writer waited for room (back-pressure).", per_conn("writer_waits"))
    out.family("pykernel_connection_fill_ratio", "gauge", "Pipe (or reader backlog) fill, 0-1.",
               ((lab, v / 100.0) for lab, v in per_conn("fill_pct")))
    out.family("pykernel_pipe_slots", "gauge", "Slots in the pipe's ring.",
               (({"pipe": p["name"], "shape": p["shape"]}, p["slots"]) for p in pipes))
    out.family("pykernel_pipe_slot_bytes", "gauge", "Bytes per slot.",
               (({"pipe": p["name"], "shape": p["shape"]}, p["slot_size"]) for p in pipes))
    out.family("pykernel_pipe_messages_total", "counter", "Messages written into the pipe.",
               (({"pipe": p["name"]}, p["stats"].get("messages", 0)) for p in pipes))
    out.family("pykernel_pipe_fill_ratio", "gauge", "Slots holding unread messages, 0-1.",
               (({"pipe": p["name"]}, p["stats"].get("fill_pct", 0.0) / 100.0) for p in pipes))
    out.family("pykernel_events_total", "counter", "Events in the state machine's log.",
               [({"system": sysname}, system["last_event"])])
    return "\n".join(out.lines) + "\n"
