"""Build-time lint of a wiring file: every error, each at file:line:column with its field.

:func:`lint_file` reads the file (:func:`control.wiring_read.read_wiring` checks syntax,
types, commands, python entries and manifests) and then applies the graph rules here:

- endpoints name a declared server and one of its terminals;
- a connection goes from an ``output``/``multiplexer`` to an ``input``/``combiner``, never
  ``multiplexer -> combiner``; a plain output feeds one input, a plain input has one writer;
- a multiplexer has at most :data:`MAX_PEERS` readers, a combiner at most that many writers;
- connections sharing a pipe agree on its geometry; the slot holds the largest message;
- endpoint dtypes/shapes agree and the writer's messages fit the reader's message size;
- required terminals are connected; ``depends_on`` names servers and has no cycle.

The ``discovery:`` section (:mod:`control.wiring_discovery`) adds one server, which
connections and ``depends_on`` may name like any other.

Warnings: an output nobody reads, a slot much larger than the largest message, a ring of
256 MiB or more.
Nothing is started: lint belongs in a user's build.
"""

from __future__ import annotations

import difflib
import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from control.errors import WiringError
from control.manifest import TerminalSpec
from control.wiring import ConnectionSpec, Diagnostic, Wiring
from control.wiring_read import read_wiring

MAX_PEERS = 32
"""Most readers of a multiplexer pipe, or writers of a combiner pipe (the core's limit)."""
HUGE_PIPE = 256 << 20
"""A pipe ring of this many bytes or more is warned (shared memory is often limited)."""
OVERSIZE_FACTOR = 4
"""A slot this many times the largest message (and at least 4 KiB over it) is warned."""


@dataclass(frozen=True)
class LintReport:
    """Everything lint found in one wiring file.

    Attributes:
        file: the wiring file as given.
        diagnostics: errors and warnings sorted by file, line, column.

    """

    file: str
    diagnostics: tuple[Diagnostic, ...]

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        """The diagnostics of severity ``error``."""
        return tuple(d for d in self.diagnostics if d.severity == "error")

    @property
    def warnings(self) -> tuple[Diagnostic, ...]:
        """The diagnostics of severity ``warning``."""
        return tuple(d for d in self.diagnostics if d.severity == "warning")

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form of ``pykernel lint --json``."""
        return {"file": self.file, "ok": self.ok, "errors": len(self.errors),
                "warnings": len(self.warnings),
                "diagnostics": [d.to_dict() for d in self.diagnostics]}


@dataclass(frozen=True)
class PipeGroup:
    """The connections one pipe carries, with its geometry resolved.

    Attributes:
        owner: ``(server, terminal)`` that owns the pipe (the multiplexer, the combiner,
            or a plain output).
        shape: ``one``, ``multiplexer`` or ``combiner``.
        connections: the connections it carries, in file order.
        slots: ring slots (a power of two).
        slot_size: bytes per slot.
        lossy: overwrite-and-count-drops mode.
        mode: permission bits.
        message_size: the largest message of any endpoint.

    """

    owner: tuple[str, str]
    shape: str
    connections: tuple[ConnectionSpec, ...]
    slots: int
    slot_size: int
    lossy: bool
    mode: int
    message_size: int


def lint_file(file: str | os.PathLike[str]) -> LintReport:
    """Lint a wiring file without starting anything.

    Args:
        file: the YAML wiring file.

    Returns:
        Every error and warning, sorted by position. Bad content never raises.

    """
    wiring, diags = read_wiring(file)
    if wiring is not None:
        diags.extend(check_graph(wiring))
    return LintReport(os.fspath(file), _sorted(diags))


def load_checked(file: str | os.PathLike[str]) -> Wiring:
    """Read a wiring file that must be free of errors (warnings are allowed).

    Raises:
        WiringError: carrying every error diagnostic; the first one is in its message.

    """
    wiring, diags = read_wiring(file)
    if wiring is not None:
        diags.extend(check_graph(wiring))
    errors = [d for d in _sorted(diags) if d.severity == "error"]
    if errors or wiring is None:
        raise WiringError(errors)
    return wiring


def _sorted(diags: Iterable[Diagnostic]) -> tuple[Diagnostic, ...]:
    unique = dict.fromkeys(diags)  # the same problem reached twice is reported once
    return tuple(sorted(unique, key=lambda d: (d.file, d.line, d.column, d.field, d.code)))


def check_graph(wiring: Wiring) -> list[Diagnostic]:
    """Apply the graph rules to a type-checked wiring.

    Returns:
        The diagnostics found (unsorted).

    """
    out: list[Diagnostic] = []
    valid = _check_endpoints(wiring, out)
    _check_fan(wiring, valid, out)
    group_pipes(wiring, valid, out)
    _check_terminal_use(wiring, valid, out)
    _check_dependencies(wiring, out)
    return out


def _terminal(wiring: Wiring, conn: ConnectionSpec, side: str,
              out: list[Diagnostic]) -> TerminalSpec | None:
    server_name, term_name = conn.source if side == "from" else conn.target
    path = ("connections", conn.index, side)
    if server_name in wiring.broken:
        return None  # its own errors are already reported
    server = wiring.server(server_name)
    if server is None:
        names = [s.name for s in wiring.servers] + sorted(wiring.broken)
        out.append(wiring.diagnostic(path, "unknown-server",
                                     f"unknown server {server_name!r}{_hint(server_name, names)}"))
        return None
    spec = server.manifest.terminal(term_name)
    if spec is None:
        names = [t.name for t in server.manifest.terminals]
        out.append(wiring.diagnostic(
            path, "unknown-terminal",
            f"server {server_name!r} has no terminal {term_name!r}{_hint(term_name, names)} "
            f"(it has: {', '.join(names)})"))
    return spec


def _hint(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _check_endpoints(wiring: Wiring, out: list[Diagnostic]) -> list[
        tuple[ConnectionSpec, TerminalSpec, TerminalSpec]]:
    valid = []
    seen: dict[tuple[tuple[str, str], tuple[str, str]], int] = {}
    for conn in wiring.connections:
        path = ("connections", conn.index)
        src = _terminal(wiring, conn, "from", out)
        dst = _terminal(wiring, conn, "to", out)
        key = (conn.source, conn.target)
        if key in seen:
            out.append(wiring.diagnostic(path, "duplicate-connection",
                                         f"{conn.label} is already connected at "
                                         f"connections[{seen[key]}]"))
            continue
        seen[key] = conn.index
        if src is None or dst is None:
            continue
        ok = True
        if not src.writes:
            out.append(wiring.diagnostic((*path, "from"), "direction-mismatch",
                                         f"{conn.label}: {_end(conn.source)} is an {src.direction}"
                                         "; a connection starts at an output or multiplexer"))
            ok = False
        if dst.writes:
            out.append(wiring.diagnostic((*path, "to"), "direction-mismatch",
                                         f"{conn.label}: {_end(conn.target)} is an "
                                         f"{dst.direction}; a connection ends at an input or "
                                         "combiner"))
            ok = False
        if ok and src.direction == "multiplexer" and dst.direction == "combiner":
            out.append(wiring.diagnostic(path, "multiplexer-to-combiner",
                                         f"{conn.label}: a multiplexer cannot feed a combiner "
                                         "(each owns its pipe); use an output or an input"))
            ok = False
        if ok:
            _check_payload(wiring, conn, src, dst, out)
            valid.append((conn, src, dst))
    return valid


def _end(endpoint: tuple[str, str]) -> str:
    return f"{endpoint[0]}.{endpoint[1]}"


def _check_payload(wiring: Wiring, conn: ConnectionSpec, src: TerminalSpec, dst: TerminalSpec,
                   out: list[Diagnostic]) -> None:
    path = ("connections", conn.index)
    if src.dtype is not None and dst.dtype is not None:
        import numpy as np  # deferred: only systems with typed terminals pay for numpy

        if np.dtype(src.dtype) != np.dtype(dst.dtype) or src.shape != dst.shape:
            out.append(wiring.diagnostic(
                path, "dtype-mismatch",
                f"{conn.label}: writer sends {src.dtype} {list(src.shape or ())} but reader "
                f"expects {dst.dtype} {list(dst.shape or ())}"))
    if src.message_size > dst.message_size:
        out.append(wiring.diagnostic(
            path, "message-size-mismatch",
            f"{conn.label}: writer messages up to {src.message_size} bytes exceed the reader's "
            f"message_size {dst.message_size}"))


def _check_fan(wiring: Wiring, valid: list[tuple[ConnectionSpec, TerminalSpec, TerminalSpec]],
               out: list[Diagnostic]) -> None:
    by_src: dict[tuple[str, str], list[ConnectionSpec]] = defaultdict(list)
    by_dst: dict[tuple[str, str], list[ConnectionSpec]] = defaultdict(list)
    for conn, src, dst in valid:
        by_src[conn.source].append(conn)
        by_dst[conn.target].append(conn)
        first_src, first_dst = by_src[conn.source][0], by_dst[conn.target][0]
        path = ("connections", conn.index)
        if src.direction == "output" and conn is not first_src:
            out.append(wiring.diagnostic(
                path, "fan-out-plain-output",
                f"{_end(conn.source)} is a plain output already connected at "
                f"connections[{first_src.index}]; fan-out needs a multiplexer terminal"))
        if dst.direction == "input" and conn is not first_dst:
            out.append(wiring.diagnostic(
                path, "fan-in-plain-input",
                f"{_end(conn.target)} is a plain input already fed at "
                f"connections[{first_dst.index}]; two writers need a combiner terminal"))
        if src.direction == "multiplexer" and len(by_src[conn.source]) == MAX_PEERS + 1:
            out.append(wiring.diagnostic(
                path, "too-many-readers",
                f"multiplexer {_end(conn.source)} has more than {MAX_PEERS} readers"))
        if dst.direction == "combiner" and len(by_dst[conn.target]) == MAX_PEERS + 1:
            out.append(wiring.diagnostic(
                path, "too-many-writers",
                f"combiner {_end(conn.target)} has more than {MAX_PEERS} writers"))


def pipe_owner(conn: ConnectionSpec, src: TerminalSpec, dst: TerminalSpec) -> tuple[
        tuple[str, str], str]:
    """Return the terminal owning the pipe that carries ``conn``, and the pipe's shape."""
    if src.direction == "multiplexer":
        return conn.source, "multiplexer"
    if dst.direction == "combiner":
        return conn.target, "combiner"
    return conn.source, "one"


def group_pipes(wiring: Wiring,
                valid: list[tuple[ConnectionSpec, TerminalSpec, TerminalSpec]],
                out: list[Diagnostic]) -> list[PipeGroup]:
    """Group valid connections into pipes and resolve each pipe's geometry.

    Connections sharing a pipe must agree on what they set; unset values come from the
    file's ``defaults``; the slot size defaults to the largest endpoint message size.
    Conflicts, slots too small and oversized slots are appended to ``out``.

    Returns:
        The pipes, ordered by owner terminal.

    """
    members: dict[tuple[str, str], list[tuple[ConnectionSpec, TerminalSpec, TerminalSpec]]] = (
        defaultdict(list))
    shapes: dict[tuple[str, str], str] = {}
    for conn, src, dst in valid:
        owner, shape = pipe_owner(conn, src, dst)
        members[owner].append((conn, src, dst))
        shapes[owner] = shape
    groups = []
    for owner in sorted(members):
        conns = members[owner]
        need = max(max(s.message_size, d.message_size) for _, s, d in conns)
        chosen: dict[str, tuple[Any, int]] = {}
        for conn, _, _ in conns:
            for key in ("slots", "slot_size", "lossy", "mode"):
                value = getattr(conn, key)
                if value is None:
                    continue
                if key in chosen and chosen[key][0] != value:
                    out.append(wiring.diagnostic(
                        ("connections", conn.index, key), "geometry-conflict",
                        f"{key} {value!r} conflicts with {chosen[key][0]!r} at "
                        f"connections[{chosen[key][1]}] (both use pipe of {_end(owner)})"))
                else:
                    chosen.setdefault(key, (value, conn.index))
        slot_size = chosen.get("slot_size", (need, -1))[0]
        if "slot_size" in chosen:
            _check_slot(wiring, owner, slot_size, need, conns, chosen["slot_size"][1], out)
        slots = chosen.get("slots", (wiring.slots, -1))[0]
        if slots * slot_size >= HUGE_PIPE:
            at = chosen.get("slots", chosen.get("slot_size", (0, conns[0][0].index)))[1]
            out.append(wiring.diagnostic(
                ("connections", at), "huge-pipe",
                f"pipe of {_end(owner)} needs {slots * slot_size >> 20} MiB of shared memory "
                "(/dev/shm is often smaller, e.g. 64 MiB in containers)", severity="warning"))
        groups.append(PipeGroup(
            owner, shapes[owner], tuple(c for c, _, _ in conns), slots, slot_size,
            chosen.get("lossy", (wiring.lossy, -1))[0], chosen.get("mode", (wiring.mode, -1))[0],
            need))
    return groups


def _check_slot(wiring: Wiring, owner: tuple[str, str], slot_size: int, need: int,
                conns: list[tuple[ConnectionSpec, TerminalSpec, TerminalSpec]], at: int,
                out: list[Diagnostic]) -> None:
    path = ("connections", at, "slot_size")
    if slot_size < need:
        biggest = next(f"{_end(c.source)} ({s.message_size})" if s.message_size == need
                       else f"{_end(c.target)} ({d.message_size})"
                       for c, s, d in conns if need in (s.message_size, d.message_size))
        out.append(wiring.diagnostic(
            path, "message-too-large",
            f"message size {need} of {biggest} is larger than the pipe slot {slot_size} "
            f"(pipe of {_end(owner)})"))
    elif slot_size >= OVERSIZE_FACTOR * need and slot_size - need >= 4096:
        out.append(wiring.diagnostic(
            path, "oversized-pipe",
            f"slot_size {slot_size} is much larger than the largest message {need}",
            severity="warning"))


def _check_terminal_use(wiring: Wiring,
                        valid: list[tuple[ConnectionSpec, TerminalSpec, TerminalSpec]],
                        out: list[Diagnostic]) -> None:
    used = {c.source for c, _, _ in valid} | {c.target for c, _, _ in valid}
    # A terminal named by an invalid connection is not reported unconnected as well.
    named = {c.source for c in wiring.connections} | {c.target for c in wiring.connections}
    for server in wiring.servers:
        for term in server.manifest.terminals:
            key = (server.name, term.name)
            if key in used or key in named:
                continue
            if server.origin != "servers":
                continue  # a section's server: its outputs are there for whoever wants them
            path = ("servers", server.name)
            if term.required:
                out.append(wiring.diagnostic(
                    path, "required-unconnected",
                    f"required {term.direction} terminal {_end(key)} is not connected"))
            elif term.writes:
                out.append(wiring.diagnostic(
                    path, "unused-output",
                    f"{term.direction} terminal {_end(key)} is not connected (nobody reads it)",
                    severity="warning"))


def _check_dependencies(wiring: Wiring, out: list[Diagnostic]) -> None:
    names = {s.name for s in wiring.servers} | set(wiring.broken)
    graph: dict[str, list[str]] = {}
    for server in wiring.servers:
        edges = []
        for i, dep in enumerate(server.depends_on):
            if dep not in names:
                out.append(wiring.diagnostic(
                    ("servers", server.name, "depends_on", i), "unknown-dependency",
                    f"{server.name} depends on unknown server {dep!r}{_hint(dep, sorted(names))}"))
            elif dep in graph or wiring.server(dep) is not None:
                edges.append(dep)
        graph[server.name] = edges
    for cycle in find_cycles(graph):
        out.append(wiring.diagnostic(
            ("servers", cycle[0], "depends_on"), "dependency-cycle",
            f"start dependencies form a cycle: {' -> '.join([*cycle, cycle[0]])}"))


def find_cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Return one cycle per strongly connected component that has one.

    Each cycle starts at its smallest name and follows edges in sorted order, so the
    result is deterministic.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        # Iterative Tarjan: a 1,000-server chain must not hit the recursion limit.
        work = [(root, iter(sorted(graph.get(root, []))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            advanced = False
            for nxt in edges:
                if nxt not in graph:
                    continue
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                if len(comp) > 1 or node in graph.get(node, []):
                    components.append(sorted(comp))
    return sorted(_walk_cycle(graph, set(comp)) for comp in components)


def _walk_cycle(graph: dict[str, list[str]], comp: set[str]) -> list[str]:
    start = min(comp)
    # Breadth-first from start back to start inside the component: the shortest cycle.
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt_frontier = []
        for node in frontier:
            for nxt in sorted(graph[node]):
                if nxt not in comp:
                    continue
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return list(reversed(path))
                if nxt not in prev:
                    prev[nxt] = node
                    nxt_frontier.append(nxt)
        frontier = nxt_frontier
    return [start]
