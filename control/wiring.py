"""Wiring files: the format's records, and YAML read with the line:column of every node.

A wiring file describes a static system (see the README section "wiring")::

    system: demo
    python_path: [".."]              # import roots for python entries, relative to this file
    defaults: {slots: 64, lossy: false, mode: "0600", restart: never}
    servers:
      source:
        python: examples.demo_servers:source     # manifest comes from the decorator
        restart: on-failure
      tool:
        command: ["./bin/tool", "--fast"]        # external program
        manifest: tool.manifest.yaml             # or an inline mapping
        depends_on: [source]
    connections:
      - source.frames -> tool.frames             # short form
      - {from: tool.out, to: sink.in, slots: 256, slot_size: 8192, lossy: true}
    discovery:                                   # optional: LLDP + beacon as a server
      interfaces: [eth0]
      passphrase_file: beacon.secret             # never the passphrase itself

This module holds the records (:class:`Wiring`, :class:`ServerSpec`,
:class:`ConnectionSpec`, :class:`Diagnostic`) and :func:`load_located`; the ``discovery:``
section is :mod:`control.wiring_discovery`'s.
:func:`control.wiring_read.read_wiring` checks every field; :mod:`control.lint` applies
the graph rules.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

from control.manifest import Manifest, Path

if TYPE_CHECKING:
    from control.wiring_discovery import DiscoverySpec

RESTART_POLICIES = ("never", "on-failure", "always")
"""Accepted ``restart`` values."""
NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
"""System and server instance names (no dots: a dot separates server and terminal)."""
RESERVED_ENV_PREFIX = "PYKERNEL_"
"""Environment names the plan sets; a wiring file may not."""

TOP_FIELDS = ("system", "python_path", "defaults", "servers", "connections", "discovery")
DEFAULT_FIELDS = ("slots", "lossy", "mode", "restart", "backoff")
SERVER_FIELDS = ("python", "command", "manifest", "cwd", "env", "restart", "backoff",
                 "depends_on")
CONNECTION_FIELDS = ("from", "to", "slots", "slot_size", "lossy", "mode")
BACKOFF_FIELDS = ("initial", "max")

DEFAULT_SLOTS = 64
"""Ring slots of a pipe when neither the connection nor ``defaults`` say."""
DEFAULT_MODE = 0o600
"""Permission bits of a pipe's shared-memory object (owner only)."""
DEFAULT_BACKOFF = (0.1, 10.0)
"""Restart delay (initial, cap) in seconds."""


@dataclass(frozen=True)
class Diagnostic:
    """One lint finding.

    Attributes:
        severity: ``error`` or ``warning``.
        code: short kebab-case code (see the README's lint table).
        message: what is wrong, naming the offending value.
        file: the file it is in.
        line: 1-based line (0 when the file itself is at fault).
        column: 1-based column (0 when unknown).
        field: dotted field path, e.g. ``servers.source.restart`` or ``connections[2].to``.

    """

    severity: str
    code: str
    message: str
    file: str
    line: int
    column: int
    field: str

    def format(self) -> str:
        """Return ``file:line:column: severity[code] field: message``."""
        where = f" {self.field}:" if self.field else ""
        return (f"{self.file}:{self.line}:{self.column}: {self.severity}[{self.code}]"
                f"{where} {self.message}")

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form used by ``pykernel lint --json``."""
        return {"severity": self.severity, "code": self.code, "message": self.message,
                "file": self.file, "line": self.line, "column": self.column,
                "field": self.field}


def field_name(path: Path) -> str:
    """Render a field path as ``servers.source.terminals[0].name``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# ---------------------------------------------------------------------------------------
# YAML with locations. PyYAML's constructors lose node marks and silently keep the last
# of two equal keys, so we compose the node graph and build values ourselves.

_LOADER: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present
_MAX_NODES = 250_000  # alias expansion budget ("billion laughs"); 1,000 servers use ~30k
_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
_COLLECTION_TAGS = frozenset({"tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"})


@dataclass(frozen=True)
class Located:
    """A YAML document read with the position of every field.

    Attributes:
        file: the file name shown in diagnostics.
        value: the plain Python value (None when unreadable).
        locations: field path -> (line, column), 1-based; a mapping entry is located at
            its key.
        diagnostics: syntax errors, duplicate keys and other document-level problems.

    """

    file: str
    value: Any
    locations: Mapping[Path, tuple[int, int]]
    diagnostics: tuple[Diagnostic, ...]


class _Builder:
    def __init__(self, loader: Any, file: str) -> None:
        self.loader = loader
        self.file = file
        self.locations: dict[Path, tuple[int, int]] = {}
        self.diags: list[Diagnostic] = []
        self.active: set[int] = set()
        self.visits = 0

    def error(self, mark: Any, path: Path, code: str, message: str) -> None:
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
        self.diags.append(Diagnostic("error", code, message, self.file, line, column,
                                     field_name(path)))

    def scalar(self, node: yaml.ScalarNode) -> Any:
        # Most scalars are plain strings: skip the constructor's bookkeeping for them.
        if node.tag == _STR_TAG:
            return node.value
        return self.loader.construct_object(node)

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.visits += 1
        if self.visits > _MAX_NODES:
            raise _TooLarge
        self.locations.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node)
        if id(node) in self.active:
            self.error(node.start_mark, path, "yaml-syntax", "recursive alias")
            return None
        if node.tag not in _COLLECTION_TAGS:
            # SafeLoader refuses unknown scalar tags itself; do the same for collections.
            raise yaml.constructor.ConstructorError(
                None, None, f"unsupported tag {node.tag!r}", node.start_mark)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            return self._mapping(node, path)
        finally:
            self.active.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[Any, Any]:
        explicit = [pair for pair in node.value if pair[0].tag != _MERGE_TAG]
        self.loader.flatten_mapping(node)  # resolves '<<' merge keys in place
        explicit_ids = {id(pair[0]) for pair in explicit}
        out: dict[Any, Any] = {}
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.error(key_node.start_mark, path, "type", "mapping keys must be scalars")
                continue
            key = self.scalar(key_node)
            here = (*path, key if isinstance(key, str) else str(key))  # [i] is for lists
            line = key_node.start_mark.line + 1
            if key in out and id(key_node) in explicit_ids and key in first_line:
                self.error(key_node.start_mark, here, "duplicate-key",
                           f"duplicate key {key!r} (first at line {first_line[key]}); "
                           "YAML would silently keep the last one")
                continue
            if id(key_node) in explicit_ids:
                first_line[key] = line
            self.locations[here] = (line, key_node.start_mark.column + 1)
            out[key] = self.build(value_node, here)
            self.locations[here] = (line, key_node.start_mark.column + 1)
        return out


class _TooLarge(Exception):
    pass


@dataclass(frozen=True)
class _Mark:
    line: int  # 0-based, like yaml.Mark
    column: int


_LINE_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")  # YAML 1.1's line breaks


def _reader_mark(text: bytes, exc: yaml.reader.ReaderError) -> _Mark:
    """Turn a ReaderError's position into a line and column.

    libyaml (and PyYAML when decoding) counts bytes; PyYAML's printable check counts
    characters (its ``encoding`` is then ``"unicode"``). A BOM takes no column.
    """
    codec = ("utf-16-le" if text.startswith(b"\xff\xfe") else
             "utf-16-be" if text.startswith(b"\xfe\xff") else "utf-8")
    if exc.encoding == "unicode":
        prefix = text.decode(codec, errors="replace")[:exc.position]
    else:
        prefix = text[:exc.position].decode(codec, errors="replace")
    lines = _LINE_BREAK.split(prefix.removeprefix("\ufeff"))
    return _Mark(len(lines) - 1, len(lines[-1]))


def load_located(file: str, shown: str | None = None) -> Located:
    """Read one YAML document keeping every node's line:column.

    Args:
        file: path to read.
        shown: name to use in diagnostics (default: ``file``).

    Returns:
        The document; unreadable files, syntax errors, several documents, duplicate keys
        and unsupported tags are diagnostics, never exceptions.

    """
    name = shown if shown is not None else file
    try:
        with open(file, "rb") as fh:
            text = fh.read()
    except OSError as exc:
        diag = Diagnostic("error", "file-not-found", f"cannot read: {exc.strerror}", name, 0, 0,
                          "")
        return Located(name, None, {}, (diag,))
    builder = _Builder(None, name)
    try:
        loader = _LOADER(text)
        builder.loader = loader
        try:
            node = loader.get_single_node()
            if node is None:
                builder.error(None, (), "empty-file", "the file holds no YAML document")
                return Located(name, None, {}, tuple(builder.diags))
            value = builder.build(node, ())
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        text_msg = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        builder.error(mark, (), "yaml-syntax", text_msg or "invalid YAML")
        return Located(name, None, {}, tuple(builder.diags))
    except yaml.reader.ReaderError as exc:  # not text: bad UTF-8/16 or a control character
        char = exc.character  # a byte or a code point (int), as yaml's own '#x' shows it
        what = f"#x{char:04x}" if isinstance(char, int) else repr(char)
        builder.error(_reader_mark(text, exc), (), "yaml-syntax",
                      f"not YAML text: {what}: {' '.join(str(exc.reason).split())}")
        return Located(name, None, {}, tuple(builder.diags))
    except (yaml.YAMLError, UnicodeDecodeError, ValueError) as exc:
        # One line: PyYAML's messages carry a second '  in "<byte string>"...' line.
        builder.error(None, (), "yaml-syntax", f"invalid YAML: {' '.join(str(exc).split())}")
        return Located(name, None, {}, tuple(builder.diags))
    except (_TooLarge, RecursionError):
        builder.error(None, (), "yaml-syntax",
                      "document too large (alias expansion) or nested too deeply")
        return Located(name, None, {}, tuple(builder.diags))
    return Located(name, value, builder.locations, tuple(builder.diags))


@dataclass(frozen=True)
class ServerSpec:
    """One server as the wiring file declares it, with its manifest resolved.

    Attributes:
        name: instance name in this system (a key of ``servers``).
        kind: ``python`` or ``command``.
        entry: ``module:callable`` for python servers, else None.
        argv: the command for command servers (argv[0] resolved when it has a ``/``).
        cwd: absolute working directory (default: the wiring file's directory).
        env: extra environment from the file (``PYKERNEL_*`` is reserved).
        restart: ``never``, ``on-failure`` or ``always``.
        backoff_initial: first restart delay in seconds.
        backoff_max: cap on the restart delay in seconds.
        depends_on: servers that must be ready before this one starts.
        manifest: the resolved manifest.
        origin: the wiring file's section that declared it: ``servers``, or ``discovery``
            for the server the ``discovery:`` section expands into.

    """

    name: str
    kind: str
    entry: str | None
    argv: tuple[str, ...]
    cwd: str
    env: tuple[tuple[str, str], ...]
    restart: str
    backoff_initial: float
    backoff_max: float
    depends_on: tuple[str, ...]
    manifest: Manifest
    origin: str = "servers"


@dataclass(frozen=True)
class ConnectionSpec:
    """One connection ``source -> target`` with the pipe settings written on it.

    Attributes:
        index: position in ``connections`` (for locating diagnostics).
        source: ``(server, terminal)`` that writes.
        target: ``(server, terminal)`` that reads.
        slots: ring slots, or None for the default.
        slot_size: bytes per slot, or None (the largest message size of the endpoints).
        lossy: overwrite-and-count-drops mode, or None for the default.
        mode: permission bits of the shared-memory object, or None for the default.

    """

    index: int
    source: tuple[str, str]
    target: tuple[str, str]
    slots: int | None = None
    slot_size: int | None = None
    lossy: bool | None = None
    mode: int | None = None

    @property
    def label(self) -> str:
        """``server.terminal -> server.terminal``."""
        return f"{self.source[0]}.{self.source[1]} -> {self.target[0]}.{self.target[1]}"


@dataclass(frozen=True)
class Wiring:
    """A wiring file read and type-checked (graph rules not yet applied).

    Attributes:
        file: the path as given.
        base_dir: absolute directory of the file (relative paths resolve against it).
        system: the system name.
        python_path: absolute import roots for python entries.
        slots: default ring slots.
        lossy: default lossy flag.
        mode: default permission bits.
        servers: servers whose declaration is valid, in file order.
        connections: connections whose form is valid, in file order.
        broken: names of declared servers that have errors (graph rules skip them).
        locations: field path -> (line, column) in ``file``.
        discovery: the ``discovery:`` section, or None when the file has none (when
            enabled, its server is also among ``servers``).

    """

    file: str
    base_dir: str
    system: str
    python_path: tuple[str, ...]
    slots: int
    lossy: bool
    mode: int
    servers: tuple[ServerSpec, ...]
    connections: tuple[ConnectionSpec, ...]
    broken: frozenset[str] = frozenset()
    locations: Mapping[Path, tuple[int, int]] = field(default_factory=dict, compare=False,
                                                       repr=False)
    discovery: DiscoverySpec | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {s.name: s for s in self.servers})

    def server(self, name: str) -> ServerSpec | None:
        """Return the server called ``name``, or None."""
        return self._by_name.get(name)  # type: ignore[attr-defined, no-any-return]

    def diagnostic(self, path: Path, code: str, message: str,
                   severity: str = "error") -> Diagnostic:
        """Build a diagnostic located at ``path`` (or its nearest located parent)."""
        return locate(self.file, self.locations, path, code, message, severity)


def locate(file: str, locations: Mapping[Path, tuple[int, int]], path: Path, code: str,
           message: str, severity: str = "error") -> Diagnostic:
    """Build a diagnostic at ``path`` or, when it has no position, its nearest parent."""
    probe = tuple(path)
    while probe not in locations and probe:
        probe = probe[:-1]
    line, column = locations.get(probe, (0, 0))
    return Diagnostic(severity, code, message, file, line, column, field_name(path))
