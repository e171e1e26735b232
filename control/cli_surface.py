"""``pykernel status|events|connect|disconnect|graph``: talk to a running kernel's surface.

Each verb finds the kernel through its run directory (``--run-dir``, ``$PYKERNEL_RUN_DIR``,
or the one live kernel under the usual places) or takes ``--url`` (with ``--token-file`` for
modifies), and prints JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from control.graph import FORMATS, edge_label
from control.surface._client import SurfaceClient
from pykernel.cli import add_json_flag, emit


def _where(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="the control surface's URL (default: from the run dir)")
    parser.add_argument("--run-dir", help="the kernel's run directory "
                                          "(default: $PYKERNEL_RUN_DIR or the one running kernel)")
    parser.add_argument("--token-file", help="bearer token file for modifies "
                                             "(default: surface.token in the run dir)")


def _client(args: argparse.Namespace) -> SurfaceClient:
    return SurfaceClient.locate(args.url, args.run_dir, args.token_file)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the surface verbs to the ``pykernel`` command."""
    p = subparsers.add_parser("status", help="kernel, servers and connections with live rates")
    _where(p)
    add_json_flag(p)
    p.set_defaults(func=_status)

    p = subparsers.add_parser("events", help="the state machine's event log")
    _where(p)
    p.add_argument("--since", type=int, default=0, help="only events after this sequence")
    p.add_argument("--limit", type=int, default=100, help="at most this many (newest)")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    add_json_flag(p)
    p.set_defaults(func=_events)

    p = subparsers.add_parser("connect", help="connect two terminals at run time")
    p.add_argument("source", metavar="SRC", help="server.terminal that writes")
    p.add_argument("target", metavar="DST", help="server.terminal that reads")
    _where(p)
    add_json_flag(p)
    p.set_defaults(func=_connect)

    p = subparsers.add_parser("disconnect", help="remove a connection by its ID")
    p.add_argument("connection", metavar="ID", help="connection ID (see `pykernel status`)")
    _where(p)
    add_json_flag(p)
    p.set_defaults(func=_disconnect)

    p = subparsers.add_parser("graph", help="the running system as a diagram")
    p.add_argument("--format", choices=FORMATS, default="dot", help="dot (default), mermaid, svg")
    _where(p)
    add_json_flag(p)
    p.set_defaults(func=_graph)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def _render_status(data: dict[str, Any]) -> str:
    s = data["system"]
    cx = s["connectome"]
    out = [f"system {s['system']}: {s['state']}  (connectome {cx['id'][:12]} "
           f"v{cx['version']}, {s['servers']} servers, {s['connections']} connections)", ""]
    rows = [["SERVER", "STATE", "PID", "STARTS"]]
    rows += [[v["name"], v["state"], str(v["pid"] or "-"), str(v["starts"])]
             for v in data["servers"]]
    out += [_table(rows), ""]
    rows = [["CONNECTION", "SOURCE -> TARGET", "FLOW"]]
    rows += [[c["id"], f"{c['source']} -> {c['target']}", edge_label(c)]
             for c in data["connections"]]
    out.append(_table(rows))
    return "\n".join(out)


def _status(args: argparse.Namespace) -> int:
    client = _client(args)
    data = {"system": client.request("GET", "/api/system"),
            "servers": client.request("GET", "/api/servers"),
            "connections": client.request("GET", "/api/connections")}
    emit(args, data, _render_status)
    return 0


def _render_events(events: list[dict[str, Any]]) -> str:
    lines = []
    for e in events:
        when = datetime.fromtimestamp(e["time"], UTC).strftime("%H:%M:%S.%f")[:-3]
        move = f"{e['from']} -> {e['to']}" if e["from"] else e["to"]
        lines.append(f"{e['seq']:>6} {when} {e['kind']:<10} {e['subject']}: {move} "
                     f"({e['cause']})")
    return "\n".join(lines)


def _events(args: argparse.Namespace) -> int:
    client = _client(args)
    events = client.request("GET", f"/api/events?since={max(0, args.since)}&limit=10000")
    events = events[-args.limit:] if args.limit > 0 else events
    emit(args, events, _render_events)
    since = events[-1]["seq"] if events else args.since
    while args.follow:
        time.sleep(0.5)
        new = client.request("GET", f"/api/events?since={since}&limit=10000")
        if new:
            since = new[-1]["seq"]
            emit(args, new, _render_events)  # --json: one JSON list per batch
            sys.stdout.flush()
    return 0


def _connect(args: argparse.Namespace) -> int:
    made = _client(args).request("POST", "/api/connections",
                                 {"source": args.source, "target": args.target})
    emit(args, made, lambda c: f"connected {c['source']} -> {c['target']} as {c['id']} "
                               f"(pipe {c['pipe']}, {c['state']})")
    return 0


def _disconnect(args: argparse.Namespace) -> int:
    gone = _client(args).request("DELETE", f"/api/connections/{quote(args.connection, safe='')}")
    emit(args, gone, lambda c: f"disconnected {c['id']} ({c['source']} -> {c['target']})")
    return 0


def _graph(args: argparse.Namespace) -> int:
    text = _client(args).request("GET", f"/api/graph?format={args.format}")
    emit(args, {"format": args.format, "graph": text}, lambda d: d["graph"])
    return 0
