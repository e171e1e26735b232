"""JSON Schemas of what the control surface answers (the OpenAPI ``components.schemas``)."""

from __future__ import annotations

from typing import Any

from control.state_model import CONNECTION, KERNEL, SERVER

_DIRECTIONS = ["input", "output", "multiplexer", "combiner"]


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "required": required if required is not None else list(props),
            "properties": props}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_INT = {"type": "integer"}
_NUM = {"type": "number"}
_STR = {"type": "string"}
_INT_MAP = {"type": "object", "additionalProperties": _INT}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Flow": _obj({k: _NUM if k in ("msgs_per_s", "bytes_per_s", "fill_pct", "time") else _INT
                  for k in ("messages", "bytes", "msgs_per_s", "bytes_per_s", "fill_pct",
                            "drops", "writer_waits", "time")}),
    "Connection": _obj({"id": _STR, "source": _STR, "target": _STR, "pipe": _STR,
                        "state": {"type": "string", "enum": list(CONNECTION.states)},
                        "since": _NUM, "flow": _ref("Flow")}),
    "Server": _obj({"name": _STR, "state": {"type": "string", "enum": list(SERVER.states)},
                    "since": _NUM, "pid": {"type": ["integer", "null"]}, "starts": _INT,
                    "kind": _STR, "manifest": {"type": "object"},
                    "terminals": {"type": "array"}, "restart": {"type": ["string", "null"]},
                    "reason": _STR}),
    "Terminal": _obj({"id": _STR, "server": _STR, "terminal": _STR,
                      "direction": {"type": "string", "enum": _DIRECTIONS},
                      "message_size": _INT, "dtype": {"type": ["string", "null"]},
                      "shape": {"type": ["array", "null"], "items": _INT},
                      "required": {"type": "boolean"},
                      "connections": {"type": "array", "items": _STR},
                      "pipe": {"type": ["string", "null"]},
                      "role": {"type": ["string", "null"], "enum": ["writer", "reader", None]}}),
    "Pipe": _obj({"name": _STR, "shape": {"type": "string",
                                          "enum": ["one", "multiplexer", "combiner"]},
                  "slot_size": _INT, "slots": _INT, "lossy": {"type": "boolean"}, "mode": _INT,
                  "max_readers": _INT, "max_writers": _INT,
                  "connections": {"type": "array", "items": _STR},
                  "stats": {"type": "object"}}),
    "Event": _obj({"seq": _INT, "time": _NUM,
                   "kind": {"type": "string",
                            "enum": ["kernel", "server", "connection", "connectome"]},
                   "subject": _STR, "from": _STR, "to": _STR, "cause": _STR}),
    "ConnectomeRef": _obj({"id": _STR, "version": _INT}),
    "System": _obj({"system": _STR, "state": {"type": "string", "enum": list(KERNEL.states)},
                    "since": _NUM, "started": _NUM, "servers": _INT, "connections": _INT,
                    "pipes": _INT, "servers_by_state": _INT_MAP,
                    "connections_by_state": _INT_MAP, "connectome": _ref("ConnectomeRef"),
                    "last_event": _INT}),
    "Connectome": _obj({"id": _STR, "version": _INT, "system": _STR,
                        "servers": {"type": "array", "items": _ref("Server")},
                        "connections": {"type": "array", "items": _ref("Connection")},
                        "pipes": {"type": "object"}}),
}
"""Schemas by name."""

RETURNS: dict[str, dict[str, Any]] = {
    "get_system": _ref("System"),
    "get_servers": {"type": "array", "items": _ref("Server")},
    "get_server": _ref("Server"),
    "get_terminals": {"type": "array", "items": _ref("Terminal")},
    "get_connections": {"type": "array", "items": _ref("Connection")},
    "get_connection": _ref("Connection"),
    "get_pipes": {"type": "array", "items": _ref("Pipe")},
    "get_events": {"type": "array", "items": _ref("Event")},
    "get_connectome": _ref("Connectome"),
    "post_connection": _ref("Connection"),
    "delete_connection": _ref("Connection"),
    "post_start": _ref("Server"),
    "post_stop": _ref("Server"),
    "post_restart": _ref("Server"),
}
"""The response schema of each JSON route, by handler name."""
