"""Lint and plan of a 1,000-server wiring file (target: lint < 1 s).

Run: ``pytest benches/test_bench_lint.py``. The file is generated: 1,000 python servers
in rings of relays (output -> input) with start dependencies along each ring, plus
command servers sharing one manifest file, so every rule family runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from control.lint import lint_file
from control.plan import build_plan

CASES = Path(__file__).resolve().parents[1] / "tests" / "lint_cases"
SERVERS = 1000
RING = 10


def write_system(directory: Path, servers: int = SERVERS) -> Path:
    """Write a lint-clean wiring file with ``servers`` servers; return its path."""
    lines = ["system: big", f"python_path: [{json.dumps(str(CASES))}]",
             "defaults: {slots: 64, restart: on-failure}", "servers:"]
    conns = ["connections:"]
    tool = json.dumps(str(CASES / "tool.manifest.yaml"))
    for i in range(servers):
        ring, pos = divmod(i, RING)
        prev = f"s{ring * RING + (pos - 1) % RING}"
        nxt = f"s{ring * RING + (pos + 1) % RING}"
        if i % 4 == 3:
            lines.append(f"  s{i}: {{command: [sh, -c, 'exit 0'], manifest: {tool}}}")
        else:
            lines.append(f"  s{i}: {{python: \"lintcase_servers:relay\""
                         + (f", depends_on: [{prev}]" if pos else "") + "}")
        conns.append(f"  - {{from: s{i}.out, to: {nxt}.inp, slots: 128}}")
    path = directory / "big.yaml"
    path.write_text("\n".join(lines + conns) + "\n")
    return path


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated 1,000-server file."""
    path = write_system(tmp_path_factory.mktemp("bench_lint"))
    report = lint_file(path)
    assert report.ok, [d.format() for d in report.errors[:3]]
    return path


def test_lint_1000_servers(benchmark, big: Path, machine: dict[str, object]) -> None:  # type: ignore[no-untyped-def]
    """Lint of 1,000 servers and 1,000 connections."""
    benchmark.extra_info.update(machine)
    benchmark.extra_info["servers"] = SERVERS
    report = benchmark(lint_file, big)
    assert report.ok


def test_plan_1000_servers(benchmark, big: Path, machine: dict[str, object]) -> None:  # type: ignore[no-untyped-def]
    """Lint, plan and canonical JSON of 1,000 servers."""
    benchmark.extra_info.update(machine)
    text = benchmark(lambda: build_plan(big).to_json())
    assert text.count('"kind"') == SERVERS
