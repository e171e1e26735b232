"""Reading a wiring file: every field type-checked, every problem a located diagnostic.

:func:`read_wiring` never raises for bad content: it returns what it could build plus a
:class:`~control.wiring.Diagnostic` for every problem (YAML syntax, duplicate keys, wrong
types, unknown fields, commands not found or not executable, python entries that do not
import, invalid manifests). Graph rules (directions, fan-in/out, cycles, sizes) are
:mod:`control.lint`'s.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import re
import shutil
import sys
from collections.abc import Iterator
from typing import Any

from control.manifest import Manifest, Path, check_manifest, manifest_of, type_name
from control.wiring import (
    BACKOFF_FIELDS,
    CONNECTION_FIELDS,
    DEFAULT_BACKOFF,
    DEFAULT_FIELDS,
    DEFAULT_MODE,
    DEFAULT_SLOTS,
    NAME_RE,
    RESERVED_ENV_PREFIX,
    RESTART_POLICIES,
    SERVER_FIELDS,
    TOP_FIELDS,
    ConnectionSpec,
    Diagnostic,
    Located,
    ServerSpec,
    Wiring,
    load_located,
    locate,
)
from control.wiring_discovery import read_discovery

ENTRY_RE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
ENDPOINT_RE = re.compile(r"\s*([^\s.]+)\.([^\s.]+)\s*")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Reader:
    """Collects diagnostics while walking one located document."""

    def __init__(self, doc: Located) -> None:
        self.doc = doc
        self.diags: list[Diagnostic] = list(doc.diagnostics)
        # Many servers share one entry or manifest file: resolve each once per read.
        self.entries: dict[str, tuple[Manifest | None, str | None]] = {}
        self.manifest_files: dict[str, Manifest | None] = {}

    def error(self, path: Path, code: str, message: str, severity: str = "error") -> None:
        self.diags.append(locate(self.doc.file, self.doc.locations, path, code, message,
                                 severity))

    def mapping(self, value: Any, path: Path, allowed: tuple[str, ...] | None) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.error(path, "type", f"expected a mapping, got {type_name(value)}")
            return {}
        for key in value:
            if not isinstance(key, str):
                self.error(path, "type", f"key {key!r} must be a string")
            elif allowed is not None and key not in allowed:
                self.error((*path, key), "unknown-field",
                           f"unknown field {key!r} (allowed: {', '.join(allowed)})")
        return {k: v for k, v in value.items() if isinstance(k, str)}

    def string_list(self, value: Any, path: Path) -> list[str] | None:
        if not isinstance(value, list):
            self.error(path, "type", f"expected a list of strings, got {type_name(value)}")
            return None
        bad = [i for i, item in enumerate(value) if not isinstance(item, str)]
        for i in bad:
            self.error((*path, i), "type", f"expected a string, got {type_name(value[i])}")
        return None if bad else list(value)

    def slots(self, value: Any, path: Path) -> int | None:
        if not _is_int(value) or value < 2 or value > 1 << 24:
            self.error(path, "invalid-slots", f"slots {value!r} must be an integer 2..{1 << 24}")
            return None
        if value & (value - 1):
            self.error(path, "slots-not-power-of-two", f"slots {value} is not a power of two")
            return None
        return value

    def boolean(self, value: Any, path: Path) -> bool | None:
        if not isinstance(value, bool):
            self.error(path, "type", f"expected true or false, got {type_name(value)} {value!r}")
            return None
        return value

    def mode(self, value: Any, path: Path) -> int | None:
        parsed: int | None = None
        if _is_int(value):
            parsed = value
        elif isinstance(value, str) and re.fullmatch(r"0?o?[0-7]{1,4}", value):
            parsed = int(value.replace("o", ""), 8)
        if parsed is None or not 0 < parsed <= 0o777 or parsed & 0o600 != 0o600:
            self.error(path, "invalid-mode",
                       f"mode {value!r} must be octal permission bits like \"0600\" or \"0640\" "
                       "(owner read/write required)")
            return None
        return parsed

    def restart(self, value: Any, path: Path) -> str | None:
        if value not in RESTART_POLICIES:
            self.error(path, "invalid-restart",
                       f"restart {value!r} must be one of {', '.join(RESTART_POLICIES)}")
            return None
        return str(value)

    def backoff(self, value: Any, path: Path,
                default: tuple[float, float]) -> tuple[float, float] | None:
        data = self.mapping(value, path, BACKOFF_FIELDS)
        out = list(default)
        ok = isinstance(value, dict)
        for i, key in enumerate(BACKOFF_FIELDS):
            if key not in data:
                continue
            got = data[key]
            if isinstance(got, bool) or not isinstance(got, int | float) or not 0 < got <= 3600:
                self.error((*path, key), "invalid-backoff",
                           f"backoff {key} {got!r} must be a number of seconds in (0, 3600]")
                ok = False
            else:
                out[i] = float(got)
        if ok and out[0] > out[1]:
            self.error(path, "invalid-backoff",
                       f"backoff initial {out[0]} is larger than max {out[1]}")
            ok = False
        return (out[0], out[1]) if ok else None


def read_wiring(file: str | os.PathLike[str]) -> tuple[Wiring | None, list[Diagnostic]]:
    """Read and type-check a wiring file.

    Args:
        file: path of the YAML wiring file.

    Returns:
        The wiring (None when the file cannot be read as a mapping at all) and every
        diagnostic found, in the order found.

    """
    name = os.fspath(file)
    base_dir = os.path.dirname(os.path.abspath(name))
    doc = load_located(name)
    rd = _Reader(doc)
    if doc.value is None and doc.diagnostics:
        return None, rd.diags
    top = rd.mapping(doc.value, (), TOP_FIELDS)
    if not isinstance(doc.value, dict):
        return None, rd.diags
    system = top.get("system")
    if "system" not in top:
        rd.error((), "missing-field", "missing required field 'system'")
    if not isinstance(system, str) or not NAME_RE.fullmatch(system):
        if "system" in top:
            rd.error(("system",), "invalid-name",
                     f"system {system!r} must match [A-Za-z][A-Za-z0-9_-]{{0,63}}")
        system = "invalid"
    python_path = _python_path(rd, top, base_dir)
    defaults = _defaults(rd, top.get("defaults") or {})
    discovery = None
    if "discovery" in top:
        discovery = read_discovery(rd, top["discovery"], base_dir, defaults["backoff"])
    enabled = discovery is not None and discovery.enabled
    servers, broken = _servers(rd, top, base_dir, python_path, defaults, may_be_empty=enabled)
    if discovery is not None and enabled:
        if discovery.name in {s.name for s in servers} | set(broken):
            rd.error(("discovery", "name") if "name" in (top["discovery"] or {}) else
                     ("discovery",), "duplicate-name",
                     f"the discovery server would be named {discovery.name!r}, like a server "
                     "in 'servers'; set discovery.name to another name")
        else:
            servers.append(discovery.server_spec(base_dir))
    connections = _connections(rd, top)
    wiring = Wiring(name, base_dir, system, python_path, defaults["slots"], defaults["lossy"],
                    defaults["mode"], tuple(servers), tuple(connections), frozenset(broken),
                    doc.locations, discovery=discovery)
    return wiring, rd.diags


def _python_path(rd: _Reader, top: dict[str, Any], base_dir: str) -> tuple[str, ...]:
    if "python_path" not in top:
        return ()
    items = rd.string_list(top["python_path"] or [], ("python_path",)) or []
    out = []
    for i, item in enumerate(items):
        resolved = os.path.normpath(os.path.join(base_dir, item))
        if not os.path.isdir(resolved):
            rd.error(("python_path", i), "path-not-found",
                     f"python_path entry {item!r} is not a directory ({resolved})")
        out.append(resolved)
    return tuple(out)


def _defaults(rd: _Reader, value: Any) -> dict[str, Any]:
    data = rd.mapping(value, ("defaults",), DEFAULT_FIELDS)
    out: dict[str, Any] = {"slots": DEFAULT_SLOTS, "lossy": False, "mode": DEFAULT_MODE,
                           "restart": "never", "backoff": DEFAULT_BACKOFF}
    checks = {"slots": rd.slots, "lossy": rd.boolean, "mode": rd.mode, "restart": rd.restart}
    for key, check in checks.items():
        if key in data:
            got = check(data[key], ("defaults", key))
            if got is not None:
                out[key] = got
    if "backoff" in data:
        out["backoff"] = rd.backoff(data["backoff"], ("defaults", "backoff"),
                                    DEFAULT_BACKOFF) or DEFAULT_BACKOFF
    return out


def _servers(rd: _Reader, top: dict[str, Any], base_dir: str, python_path: tuple[str, ...],
             defaults: dict[str, Any], *,
             may_be_empty: bool = False) -> tuple[list[ServerSpec], list[str]]:
    if "servers" not in top:
        rd.error((), "missing-field", "missing required field 'servers'")
        return [], []
    if may_be_empty and top["servers"] in (None, {}):
        return [], []  # the discovery section's server is the only one
    raw = top["servers"]
    if not isinstance(raw, dict) or not raw:
        rd.error(("servers",), "type",
                 f"servers must be a non-empty mapping of name -> server, got {type_name(raw)}")
        return [], []
    servers: list[ServerSpec] = []
    broken: list[str] = []
    for name, body in raw.items():
        path: Path = ("servers", str(name))
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            hint = (" (YAML reads unquoted yes/no/on/off/true/false as booleans: quote it)"
                    if isinstance(name, bool) else "")
            rd.error(path, "invalid-name",
                     f"server name {name!r} must match [A-Za-z][A-Za-z0-9_-]{{0,63}}{hint}")
            broken.append(str(name))
            continue
        spec = _server(rd, name, body, path, base_dir, python_path, defaults)
        if spec is None:
            broken.append(name)
        else:
            servers.append(spec)
    return servers, broken


def _server(rd: _Reader, name: str, body: Any, path: Path, base_dir: str,
            python_path: tuple[str, ...], defaults: dict[str, Any]) -> ServerSpec | None:
    data = rd.mapping(body, path, SERVER_FIELDS)
    if not isinstance(body, dict):
        return None
    has_py, has_cmd = "python" in data, "command" in data
    if has_py == has_cmd:
        rd.error(path, "missing-field" if not has_py else "conflicting-fields",
                 "a server needs exactly one of 'python' (module:callable) or 'command' (argv)")
        return None
    cwd = base_dir
    if "cwd" in data:
        if isinstance(data["cwd"], str):
            cwd = os.path.normpath(os.path.join(base_dir, data["cwd"]))
            if not os.path.isdir(cwd):
                rd.error((*path, "cwd"), "path-not-found",
                         f"cwd {data['cwd']!r} is not a directory")
        else:
            rd.error((*path, "cwd"), "type", f"expected a string, got {type_name(data['cwd'])}")
    env = _env(rd, data.get("env") or {}, (*path, "env"))
    restart = defaults["restart"]
    if "restart" in data:
        restart = rd.restart(data["restart"], (*path, "restart")) or restart
    backoff = defaults["backoff"]
    if "backoff" in data:
        backoff = rd.backoff(data["backoff"], (*path, "backoff"), backoff) or backoff
    depends: list[str] = []
    if "depends_on" in data:
        depends = rd.string_list(data["depends_on"] or [], (*path, "depends_on")) or []
    found: Manifest | None = None
    entry: str | None = None
    argv: tuple[str, ...] = ()
    if has_py:
        entry, found = _python_entry(rd, data["python"], (*path, "python"), python_path)
    else:
        argv = _command(rd, data["command"], (*path, "command"), base_dir, dict(env))
    if "manifest" in data:
        in_code = found
        found = _manifest(rd, data["manifest"], (*path, "manifest"), base_dir)
        if in_code is not None and found is not None and in_code != found:
            rd.error((*path, "manifest"), "manifest-override",
                     f"this manifest replaces a different @manifest on {entry!r}",
                     severity="warning")
    elif has_cmd:
        rd.error(path, "missing-field", "a command server needs a 'manifest' (mapping or file)")
    elif entry is not None and found is None:
        rd.error((*path, "python"), "missing-manifest",
                 f"{entry!r} has no @manifest and the server gives no 'manifest'")
    if found is None or (has_py and entry is None) or (has_cmd and not argv):
        return None
    kind = "python" if has_py else "command"
    return ServerSpec(name, kind, entry, argv, cwd, env, restart, backoff[0], backoff[1],
                      tuple(depends), found)


def _env(rd: _Reader, value: Any, path: Path) -> tuple[tuple[str, str], ...]:
    data = rd.mapping(value, path, None)
    out = []
    for key, val in data.items():
        if key.startswith(RESERVED_ENV_PREFIX):
            rd.error((*path, key), "reserved-env",
                     f"environment variable {key!r} is reserved (PYKERNEL_* is set by the plan)")
        elif not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            rd.error((*path, key), "invalid-name", f"environment variable name {key!r} is invalid")
        elif not isinstance(val, str):
            rd.error((*path, key), "type",
                     f"environment value must be a string (quote it), got {type_name(val)}")
        else:
            out.append((key, val))
    return tuple(sorted(out))


@contextlib.contextmanager
def _import_roots(roots: tuple[str, ...]) -> Iterator[None]:
    saved = list(sys.path)
    sys.path[:0] = [r for r in roots if r not in sys.path]
    try:
        yield
    finally:
        sys.path[:] = saved


def _python_entry(rd: _Reader, value: Any, path: Path,
                  python_path: tuple[str, ...]) -> tuple[str | None, Manifest | None]:
    if not isinstance(value, str) or not ENTRY_RE.fullmatch(value):
        rd.error(path, "python-entry", f"python entry {value!r} must be 'module:callable'")
        return None, None
    if value not in rd.entries:
        if not rd.entries:
            importlib.invalidate_caches()  # files may have appeared since the last read
        with _import_roots(python_path):
            rd.entries[value] = _resolve_entry(value)
    found, problem = rd.entries[value]
    if problem is not None:
        rd.error(path, "python-entry", problem)
        return None, None
    return value, found


def _resolve_entry(value: str) -> tuple[Manifest | None, str | None]:
    """Import ``module:callable``; return its manifest, or why it cannot be used."""
    module, _, attr = value.partition(":")
    try:
        # find_spec first: a missing module is reported without running any code.
        if importlib.util.find_spec(module) is None:
            return None, f"module {module!r} is not importable"
        target: Any = importlib.import_module(module)
        for part in attr.split("."):
            target = getattr(target, part)
    except AttributeError:
        return None, f"module {module!r} has no attribute {attr!r}"
    except (Exception, SystemExit) as exc:
        return None, f"importing {module!r} failed: {type(exc).__name__}: {exc}"
    if not callable(target):
        return None, f"{value!r} is not callable"
    return manifest_of(target), None


def _command(rd: _Reader, value: Any, path: Path, base_dir: str,
             env: dict[str, str]) -> tuple[str, ...]:
    """Check the argv; return it resolved, or as written when the program is unusable.

    An unusable program is reported here; the server keeps its (valid) manifest so the graph
    rules still run on it.
    """
    argv = rd.string_list(value, path)
    if not argv:
        if argv == []:
            rd.error(path, "type", "command must not be empty")
        return ()
    prog = argv[0]
    if "/" in prog:
        resolved: str | None = os.path.normpath(os.path.join(base_dir, prog))
    else:
        resolved = shutil.which(prog, path=env.get("PATH", os.environ.get("PATH", os.defpath)))
    if resolved is None:
        rd.error((*path, 0), "command-not-found", f"command {prog!r} is not on PATH")
    elif not os.path.isfile(resolved):
        rd.error((*path, 0), "command-not-found", f"command {prog!r} not found ({resolved})")
    elif not os.access(resolved, os.X_OK):
        rd.error((*path, 0), "command-not-executable", f"command {prog!r} is not executable")
    elif "/" in prog:
        return (resolved, *argv[1:])  # a path becomes absolute: independent of cwd
    return tuple(argv)  # a bare name stays bare: the executor looks it up on PATH


def _manifest(rd: _Reader, value: Any, path: Path, base_dir: str) -> Manifest | None:
    if isinstance(value, str):
        file = os.path.normpath(os.path.join(base_dir, value))
        if not os.path.isfile(file):
            rd.error(path, "file-not-found", f"manifest file {value!r} not found ({file})")
            return None
        if file not in rd.manifest_files:
            # Shown relative to the wiring file's name as the user gave it.
            shown = os.path.normpath(os.path.join(os.path.dirname(rd.doc.file), value))
            sub = load_located(file, shown=shown)
            if sub.value is None and sub.diagnostics:
                rd.diags.extend(sub.diagnostics)
                rd.manifest_files[file] = None
            else:
                rd.manifest_files[file] = _report(_Reader(sub), sub.value, (), rd)
        return rd.manifest_files[file]
    if isinstance(value, dict):
        return _report(rd, value, path, rd)
    rd.error(path, "type",
             f"manifest must be a mapping or a file name, got {type_name(value)}")
    return None


def _report(src: _Reader, value: Any, path: Path, into: _Reader) -> Manifest | None:
    built, problems = check_manifest(value, path)
    for problem in problems:
        src.error(problem.path, problem.code, problem.message)
    if src is not into:
        into.diags.extend(src.diags)
    return built


def _connections(rd: _Reader, top: dict[str, Any]) -> list[ConnectionSpec]:
    raw = top.get("connections") or []  # an empty `connections:` is null in YAML
    if not isinstance(raw, list):
        rd.error(("connections",), "type", f"connections must be a list, got {type_name(raw)}")
        return []
    out = []
    for i, item in enumerate(raw):
        path: Path = ("connections", i)
        if isinstance(item, str):
            src_text, arrow, dst_text = item.partition("->")
            if not arrow:
                rd.error(path, "invalid-connection",
                         f"connection {item!r} must read 'server.terminal -> server.terminal'")
                continue
            data: dict[str, Any] = {"from": src_text, "to": dst_text}
        else:
            data = rd.mapping(item, path, CONNECTION_FIELDS)
            if not isinstance(item, dict):
                continue
        spec = _connection(rd, i, data, path)
        if spec is not None:
            out.append(spec)
    return out


def _endpoint(rd: _Reader, data: dict[str, Any], key: str, path: Path) -> tuple[str, str] | None:
    if key not in data:
        rd.error(path, "missing-field", f"missing required field {key!r}")
        return None
    value = data[key]
    match = ENDPOINT_RE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        rd.error((*path, key), "invalid-connection",
                 f"{key} {value!r} must be 'server.terminal'")
        return None
    return match.group(1), match.group(2)


def _connection(rd: _Reader, index: int, data: dict[str, Any],
                path: Path) -> ConnectionSpec | None:
    source = _endpoint(rd, data, "from", path)
    target = _endpoint(rd, data, "to", path)
    # A bad geometry field is reported and left to the default, so that the connection
    # still counts for the graph rules (no cascade of "not connected" errors).
    slots = rd.slots(data["slots"], (*path, "slots")) if "slots" in data else None
    slot_size = data.get("slot_size")
    if slot_size is not None and (not _is_int(slot_size) or not 1 <= slot_size <= 1 << 30):
        rd.error((*path, "slot_size"), "invalid-size",
                 f"slot_size {slot_size!r} must be an integer 1..{1 << 30}")
        slot_size = None
    lossy = rd.boolean(data["lossy"], (*path, "lossy")) if "lossy" in data else None
    mode = rd.mode(data["mode"], (*path, "mode")) if "mode" in data else None
    if source is None or target is None:
        return None
    return ConnectionSpec(index, source, target, slots, slot_size, lossy, mode)


