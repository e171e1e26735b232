"""Layer rules of DESIGN.md, checked on the source: who may import whom, and no cycles.

Imports are read with ``ast`` from every module of ``pykernel``, ``control`` and
``discovery``; nothing is imported to check them (except the last class, which proves in a
subprocess that the kernel's side loads without scapy).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pykernel", "control", "discovery")

# control may import discovery only where it starts discovery as an optional server.
CONTROL_STARTS_DISCOVERY = frozenset({"control.discovery_server"})

# Cycles through a function-level (lazy) import. Each entry is a known defect kept visible
# here until fixed; a stale entry fails, so the list only shrinks.
KNOWN_LAZY_CYCLES: dict[frozenset[str], str] = {
    frozenset({"pykernel", "pykernel._executor", "pykernel._supervise_fork",
               "pykernel._supervise_loop", "pykernel._supervise_proc", "pykernel.server"}): (
        "pykernel/server.py imports Pipe, PipeTimeout and WriterGoneError lazily from the "
        "package face, which imports server back (via _executor): import them from "
        "pykernel._pipe and pykernel._errors instead"
    ),
}


@dataclass(frozen=True)
class Edge:
    """One import statement of a project module."""

    source: str
    target: str  # an imported module name, resolved as far as the source tree allows
    line: int
    at_import: bool  # runs when the module is imported (not inside a function)
    type_only: bool  # under ``if TYPE_CHECKING:``


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imported_names(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> list[str]:
    """Every dotted name one import statement brings in, resolved to project modules."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join([*base, node.module] if node.module else base)
    else:
        prefix = node.module or ""
    names = []
    for alias in node.names:
        full = f"{prefix}.{alias.name}"
        # `from pkg import submodule` imports the submodule; `from pkg import name` the package.
        names.append(full if full in MODULES else prefix)
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return "TYPE_CHECKING" in ast.unparse(test)


def _walk(body: list[ast.stmt], at_import: bool, type_only: bool) -> Iterator[
        tuple[ast.Import | ast.ImportFrom, bool, bool]]:
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, at_import, type_only
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _walk(node.body, at_import, True)
            yield from _walk(node.orelse, at_import, type_only)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from _walk(node.body, False, type_only)
        else:
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                for child in getattr(node, field, None) or []:
                    stmts = child.body if isinstance(child, ast.ExceptHandler | ast.match_case) \
                        else [child]
                    yield from _walk(stmts, at_import, type_only)


def _edges() -> list[Edge]:
    edges = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        for node, at_import, type_only in _walk(tree.body, True, False):
            for name in _imported_names(module, is_package, node):
                edges.append(Edge(module, name, node.lineno, at_import, type_only))
    return edges


EDGES = _edges()


def _top(name: str) -> str:
    return name.split(".", 1)[0]


def _where(edge: Edge) -> str:
    return f"{MODULES[edge.source].relative_to(ROOT)}:{edge.line} imports {edge.target}"


def _cycles(include_lazy: bool) -> list[frozenset[str]]:
    """Strongly connected components (size > 1) of the project's runtime import graph."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for edge in EDGES:
        if edge.type_only or (not edge.at_import and not include_lazy):
            continue
        if edge.target in MODULES and edge.target != edge.source:
            graph[edge.source].add(edge.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(v: str) -> None:  # Tarjan; the graph is a few hundred nodes
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


class TestTheScan:
    """The checks below see the whole source tree."""

    def test_every_package_is_found(self) -> None:
        """Each of the three packages has modules, and imports were read from them."""
        for package in PACKAGES:
            assert any(_top(m) == package for m in MODULES), package
        assert len(EDGES) > 100

    def test_resolution_follows_relative_and_submodule_imports(self) -> None:
        """`from pkg import submodule` resolves to the submodule, `from pkg import X` to pkg."""
        module = "control.surface._api"
        node = ast.parse("from control.surface import _metrics, Nope").body[0]
        assert isinstance(node, ast.ImportFrom)
        assert _imported_names(module, False, node) == ["control.surface._metrics",
                                                         "control.surface"]
        rel = ast.parse("from ._auth import x").body[0]
        assert isinstance(rel, ast.ImportFrom)
        assert _imported_names(module, False, rel) == ["control.surface._auth"]

    def test_walk_separates_import_time_lazy_and_type_only(self) -> None:
        """Imports in functions are lazy, under TYPE_CHECKING type-only, in try/if eager."""
        tree = ast.parse(
            "from typing import TYPE_CHECKING\n"
            "try:\n    import a\nexcept ImportError:\n    import b\n"
            "if TYPE_CHECKING:\n    import c\n"
            "def f():\n    import d\n"
            "class K:\n    import e\n"
        )
        seen = {node.names[0].name: (at_import, type_only)
                for node, at_import, type_only in _walk(tree.body, True, False)
                if isinstance(node, ast.Import)}
        assert seen == {"a": (True, False), "b": (True, False), "c": (True, True),
                        "d": (False, False), "e": (True, False)}


class TestLayers:
    """pykernel is the bottom layer; discovery and control sit on it, apart."""

    def test_pykernel_imports_neither_control_nor_discovery(self) -> None:
        """The pipe library is usable alone: no import of a higher layer, even lazily."""
        bad = [_where(e) for e in EDGES
               if _top(e.source) == "pykernel" and _top(e.target) in {"control", "discovery"}]
        assert bad == []

    def test_discovery_never_imports_control(self) -> None:
        """discovery reports through a narrow interface, never control's internals."""
        bad = [_where(e) for e in EDGES
               if _top(e.source) == "discovery" and _top(e.target) == "control"]
        assert bad == []

    def test_control_imports_discovery_only_where_it_starts_it(self) -> None:
        """Only the modules that start discovery as an optional server import it."""
        importers = {e.source for e in EDGES
                     if _top(e.source) == "control" and _top(e.target) == "discovery"}
        bad = [_where(e) for e in EDGES if e.source in importers - CONTROL_STARTS_DISCOVERY
               and _top(e.target) == "discovery"]
        assert bad == []
        # The allow-list stays true: each listed module exists and does start discovery.
        assert importers == CONTROL_STARTS_DISCOVERY

    def test_scapy_is_imported_at_module_level_only_inside_discovery(self) -> None:
        """Outside discovery/, scapy may only be imported inside a function."""
        bad = [_where(e) for e in EDGES if _top(e.target) == "scapy"
               and _top(e.source) != "discovery" and e.at_import and not e.type_only]
        assert bad == []

    def test_discovery_imports_scapy_lazily_too(self) -> None:
        """discovery's modules load without scapy (frames import it where they build)."""
        bad = [_where(e) for e in EDGES if _top(e.target) == "scapy"
               and _top(e.source) == "discovery" and e.at_import and not e.type_only]
        assert bad == []


class TestNoCycles:
    """No import cycles among the project's modules (TYPE_CHECKING imports aside)."""

    def test_no_cycle_at_import_time(self) -> None:
        """Module-level imports form no cycle."""
        assert [sorted(c) for c in _cycles(include_lazy=False)] == []

    def test_no_cycle_through_lazy_imports_beyond_the_known_ones(self) -> None:
        """A function-level import closing a cycle is a cycle too; known ones are listed."""
        cycles = set(_cycles(include_lazy=True))
        new = [sorted(c) for c in cycles if c not in KNOWN_LAZY_CYCLES]
        assert new == []
        fixed = [sorted(c) for c in KNOWN_LAZY_CYCLES if c not in cycles]
        assert fixed == [], "remove the fixed entries from KNOWN_LAZY_CYCLES"

    def test_the_cycle_finder_finds_a_cycle(self) -> None:
        """The detector is not vacuous: a planted edge back closes a reported cycle."""
        planted = Edge("pykernel._errors", "pykernel.cli", 1, True, False)
        EDGES.append(planted)
        try:
            assert any("pykernel._errors" in c for c in _cycles(include_lazy=False))
        finally:
            EDGES.remove(planted)


# Hide scapy the way an environment without it does: every finder answers "not found",
# so `import scapy` raises ModuleNotFoundError and importlib.util.find_spec returns None.
_HIDE_SCAPY = """
import sys
class _Hide:
    def __init__(self, finder):
        self._finder = finder
    def find_spec(self, name, path=None, target=None):
        if name == "scapy" or name.startswith("scapy."):
            return None
        find = getattr(self._finder, "find_spec", None)
        return find(name, path, target) if find else None
    def __getattr__(self, attr):
        return getattr(self._finder, attr)
sys.meta_path[:] = [_Hide(f) for f in sys.meta_path]
"""


def _run_without_scapy(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _HIDE_SCAPY + code], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)


class TestKernelWithoutScapy:
    """The kernel's side loads and its CLI assembles with scapy absent."""

    def test_scapy_is_really_hidden(self) -> None:
        """The trick works: scapy cannot be imported and find_spec says it is absent."""
        proc = _run_without_scapy(
            "import importlib.util\n"
            "assert importlib.util.find_spec('scapy') is None\n"
            "try:\n    import scapy.all\nexcept ModuleNotFoundError:\n    print('absent')\n")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "absent"

    def test_every_kernel_module_imports_and_the_cli_assembles(self) -> None:
        """pykernel, control (all but the discovery starter) and the full parser load."""
        names = sorted(m for m in MODULES if _top(m) in {"pykernel", "control"}
                       and m not in CONTROL_STARTS_DISCOVERY and not m.endswith("__main__"))
        assert {"pykernel", "control", "control.kernel"} <= set(names)
        proc = _run_without_scapy(
            "import importlib, json\n"
            f"for name in {names!r}:\n    importlib.import_module(name)\n"
            "from pykernel.cli import build_parser\n"
            "build_parser()\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'scapy')))\n")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == []

    def test_the_command_runs(self) -> None:
        """`pykernel --help`, `pykernel lint --help` and `pykernel up --help` answer."""
        proc = _run_without_scapy(
            "import contextlib, io\nfrom pykernel.cli import main\n"
            "for argv in (['--help'], ['lint', '--help'], ['up', '--help']):\n"
            "    out = io.StringIO()\n"
            "    with contextlib.redirect_stdout(out):\n"
            "        try:\n            code = main(argv)\n"
            "        except SystemExit as exc:\n            code = exc.code\n"
            "    assert code == 0 and 'usage: pykernel' in out.getvalue(), (argv, code)\n"
            "print('ok')\n")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "ok"
