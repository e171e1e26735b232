"""Diagrams of a connectome: Graphviz dot, Mermaid, and SVG (through Graphviz's ``dot``).

Input is the JSON the control surface serves at ``/api/connectome`` (servers with state and
terminals, connections with state and flow, pipes with geometry), so the CLI can draw a
remote kernel's system from what it fetched.

What the drawing shows:

- a server is a box, inputs/combiners on its left, outputs/multiplexers on its right, its
  state as the fill colour;
- a multiplexer or combiner pipe is its own small node (``fan-out`` / ``fan-in``), so one
  writer feeding many readers, or many writers feeding one reader, is visible at a glance;
- an edge is a connection, coloured by its state, labelled with its rate, bytes/s, fill and
  drops (a dashed edge is planned, not yet carrying a pipe).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from typing import Any

from control.state_model import StateError

__all__ = ["FORMATS", "GraphError", "render", "to_dot", "to_mermaid", "to_svg"]

FORMATS = ("dot", "mermaid", "svg")
"""The formats :func:`render` produces."""

SERVER_COLOURS = {
    "declared": "#d9d9d9", "starting": "#fff2a8", "ready": "#c8ecc1", "running": "#7fd17f",
    "backoff": "#ffc680", "failed": "#ff8a80", "stopped": "#a6a6a6",
}
"""Fill colour per server state."""
CONNECTION_COLOURS = {
    "planned": "#9e9e9e", "open": "#5c7cfa", "flowing": "#2b8a3e", "stalled": "#f08c00",
    "broken": "#e03131", "closed": "#bdbdbd",
}
"""Edge colour per connection state."""


class GraphError(StateError):
    """A diagram that cannot be made (unknown format, Graphviz missing or failing)."""


def _rate(value: float, unit: str) -> str:
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.1f} {prefix}{unit}"
    return f"{value:.0f} {unit}" if value >= 10 or value == 0 else f"{value:.1f} {unit}"


def edge_label(conn: dict[str, Any]) -> str:
    """Return the text on a connection's edge: state, rates, fill, drops."""
    f = conn.get("flow") or {}
    parts = [conn["state"], _rate(float(f.get("msgs_per_s", 0)), "msg/s"),
             _rate(float(f.get("bytes_per_s", 0)), "B/s"),
             f"fill {float(f.get('fill_pct', 0)):.0f}%"]
    if f.get("drops"):
        parts.append(f"drops {f['drops']}")
    return " · ".join(parts)


def _fan_pipes(cx: dict[str, Any]) -> dict[str, str]:
    """Pipes drawn as their own node: ``{pipe: "fan-out"|"fan-in"}``."""
    out = {}
    for name, geometry in (cx.get("pipes") or {}).items():
        if geometry.get("shape") == "multiplexer":
            out[name] = "fan-out"
        elif geometry.get("shape") == "combiner":
            out[name] = "fan-in"
    return out


def _segments(cx: dict[str, Any]) -> list[tuple[str, str, dict[str, Any] | None, str]]:
    """Edges to draw: (from end, to end, connection or None, colour key).

    An end is ``server.terminal`` or ``pipe:<name>`` for a fan node. A fan-out pipe gets
    one edge from the writer (plain) and one per connection to each reader; fan-in the mirror.
    """
    fans = _fan_pipes(cx)
    out: list[tuple[str, str, dict[str, Any] | None, str]] = []
    seen: set[tuple[str, str]] = set()
    for c in cx["connections"]:
        kind = fans.get(c["pipe"])
        node = f"pipe:{c['pipe']}"
        if kind == "fan-out":
            if (c["source"], node) not in seen:
                seen.add((c["source"], node))
                out.append((c["source"], node, None, "open"))
            out.append((node, c["target"], c, c["state"]))
        elif kind == "fan-in":
            out.append((c["source"], node, c, c["state"]))
            if (node, c["target"]) not in seen:
                seen.add((node, c["target"]))
                out.append((node, c["target"], None, "open"))
        else:
            out.append((c["source"], c["target"], c, c["state"]))
    return out


# ------------------------------------------------------------------ dot

def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _rec(text: str) -> str:
    """Escape text inside a Graphviz record label."""
    return re.sub(r'([{}|<>"\\ ])', r"\\\1", text)


def _port(terminal: str) -> str:
    return "t_" + re.sub(r"[^A-Za-z0-9_]", "_", terminal)


def _dot_end(end: str) -> str:
    if end.startswith("pipe:"):
        return _q(end)
    server, _, term = end.partition(".")
    return f"{_q('server:' + server)}:{_port(term)}"


def to_dot(cx: dict[str, Any]) -> str:
    """Return the connectome as a Graphviz dot digraph."""
    lines = [f"digraph {_q(cx.get('system', 'system'))} {{",
             "  rankdir=LR; node [fontname=Helvetica fontsize=10];"
             " edge [fontname=Helvetica fontsize=9];"]
    for s in cx["servers"]:
        ins = [t for t in s["terminals"] if t["direction"] in ("input", "combiner")]
        outs = [t for t in s["terminals"] if t["direction"] in ("output", "multiplexer")]

        def cells(terms: list[dict[str, Any]]) -> str:
            return "|".join(f"<{_port(t['name'])}> {_rec(t['name'])} ({t['direction']})"
                            for t in terms) or " "

        # _rec escaped quotes and backslashes already, so the label is quoted as it is.
        label = f"{{{cells(ins)}}}|{_rec(s['name'])}\\n{_rec(s['state'])}|{{{cells(outs)}}}"
        colour = SERVER_COLOURS.get(s["state"], "#ffffff")
        lines.append(f"  {_q('server:' + s['name'])} [shape=record style=filled "
                     f"fillcolor={_q(colour)} label=\"{label}\"];")
    for pipe, kind in sorted(_fan_pipes(cx).items()):
        shape = "trapezium" if kind == "fan-out" else "invtrapezium"
        lines.append(f"  {_q('pipe:' + pipe)} [shape={shape} orientation=270 style=filled "
                     f"fillcolor=\"#e7f5ff\" label={_q(kind + chr(10) + pipe)}];")
    for src, dst, conn, key in _segments(cx):
        colour = CONNECTION_COLOURS.get(key, "#000000")
        attrs = [f"color={_q(colour)}"]
        if conn is not None:
            attrs += [f"label={_q(edge_label(conn))}", f"tooltip={_q(conn['id'])}",
                      f"id={_q('conn-' + conn['id'])}"]
            if conn["state"] == "planned":
                attrs.append("style=dashed")
            if conn["state"] == "flowing":
                attrs.append("penwidth=2")
        lines.append(f"  {_dot_end(src)} -> {_dot_end(dst)} [{' '.join(attrs)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ mermaid

def _mid(end: str) -> str:
    return "n_" + re.sub(r"[^A-Za-z0-9_]", "_", end.split(".", 1)[0] if not end.startswith(
        "pipe:") else end)


def _mtext(text: str) -> str:
    return text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def to_mermaid(cx: dict[str, Any]) -> str:
    """Return the connectome as a Mermaid flowchart."""
    lines = ["flowchart LR"]
    for state, colour in SERVER_COLOURS.items():
        lines.append(f"  classDef {state} fill:{colour},stroke:#333")
    lines.append("  classDef fan fill:#e7f5ff,stroke:#1c7ed6")
    for s in cx["servers"]:
        terms = ", ".join(f"{t['name']} ({t['direction']})" for t in s["terminals"])
        lines.append(f'  {_mid("server:" + s["name"])}["{_mtext(s["name"])}<br/>'
                     f'{s["state"]}<br/><small>{_mtext(terms)}</small>"]:::{s["state"]}')
    for pipe, kind in sorted(_fan_pipes(cx).items()):
        lines.append(f'  {_mid("pipe:" + pipe)}{{{{"{kind}<br/>{_mtext(pipe)}"}}}}:::fan')
    styles = []
    for i, (src, dst, conn, key) in enumerate(_segments(cx)):
        a = _mid(src if src.startswith("pipe:") else "server:" + src.split(".", 1)[0])
        b = _mid(dst if dst.startswith("pipe:") else "server:" + dst.split(".", 1)[0])
        ends = f"{src.split('.', 1)[-1]}→{dst.split('.', 1)[-1]}"
        if conn is None:
            lines.append(f"  {a} --> {b}")
        else:
            arrow = "-.->" if conn["state"] == "planned" else "-->"
            lines.append(f'  {a} {arrow}|"{_mtext(ends + " · " + edge_label(conn))}"| {b}')
        styles.append(f"  linkStyle {i} stroke:{CONNECTION_COLOURS.get(key, '#000')}")
    return "\n".join(lines + styles) + "\n"


# ------------------------------------------------------------------ svg

_svg_cache: tuple[str, str] = ("", "")  # (dot text, its svg): viewers polling together
_svg_lock = threading.Lock()


def to_svg(cx: dict[str, Any], timeout: float = 10.0) -> str:
    """Return the connectome drawn as SVG by Graphviz's ``dot``.

    The last drawing is kept: while nothing on the diagram changed (same dot text), every
    viewer gets it without another Graphviz run.

    Raises:
        GraphError: ``dot`` is not installed, fails or takes longer than ``timeout``.

    """
    global _svg_cache
    text = to_dot(cx)
    with _svg_lock:
        if _svg_cache[0] == text:
            return _svg_cache[1]
    exe = shutil.which("dot")
    if exe is None:
        raise GraphError("svg needs Graphviz's 'dot' (apt-get install graphviz); "
                         "use format dot or mermaid")
    try:
        done = subprocess.run([exe, "-Tsvg"], input=text.encode(), capture_output=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise GraphError(f"dot took longer than {timeout} s") from None
    if done.returncode != 0:
        raise GraphError(f"dot failed: {done.stderr.decode(errors='replace').strip()}")
    svg = done.stdout.decode()
    with _svg_lock:
        _svg_cache = (text, svg)
    return svg


def render(cx: dict[str, Any], fmt: str) -> str:
    """Return the connectome drawn in ``fmt`` (one of :data:`FORMATS`).

    Raises:
        GraphError: unknown format, or SVG without a working Graphviz.

    """
    if fmt == "dot":
        return to_dot(cx)
    if fmt == "mermaid":
        return to_mermaid(cx)
    if fmt == "svg":
        return to_svg(cx)
    raise GraphError(f"unknown diagram format {fmt!r} (use {', '.join(FORMATS)})")
