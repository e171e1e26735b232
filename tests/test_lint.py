"""Lint: every error of a wiring file, each at its file:line:column with its field.

The bad files in tests/lint_cases/ carry their own expectations: a comment
``# expect: error[code]`` (or ``warning[code]``) on the line a diagnostic must point at.
Each file must produce exactly the annotated diagnostics, no more, no fewer.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

import pykernel.cli
from control.cli_static import register
from control.errors import WiringError
from control.lint import MAX_PEERS, find_cycles, lint_file, load_checked

CASES = Path(__file__).parent / "lint_cases"
EXPECT = re.compile(r"#\s*expect:\s*(.*)$")
ANNOTATED = sorted(p.name for p in CASES.glob("*.yaml")
                   if "manifest" not in p.name and "# expect:" in p.read_text())


def expectations(file: Path) -> set[tuple[str, int, str, str]]:
    """Read the ``# expect:`` annotations of one file."""
    out = set()
    for number, line in enumerate(file.read_text().splitlines(), 1):
        match = EXPECT.search(line)
        if match:
            for token in match.group(1).split():
                severity, code = re.fullmatch(r"(error|warning)\[([a-z-]+)\]", token).groups()
                out.add((os.path.realpath(file), number, severity, code))
    return out


def run_cli(argv: list[str]) -> int:
    """Run ``pykernel`` in-process with only this package's verbs loaded."""
    original = pykernel.cli._load_verbs
    pykernel.cli._load_verbs = lambda sub, verb: register(sub)  # type: ignore[assignment]
    try:
        return pykernel.cli.main(argv)
    finally:
        pykernel.cli._load_verbs = original


class TestAnnotatedCases:
    """Each bad file yields exactly its annotated diagnostics."""

    @pytest.mark.parametrize("name", ANNOTATED)
    def test_exact_diagnostics(self, name: str) -> None:
        """Every annotated line gets its diagnostic and nothing else is reported."""
        report = lint_file(CASES / name)
        got = {(os.path.realpath(d.file), d.line, d.severity, d.code)
               for d in report.diagnostics}
        files = {CASES / name} | {Path(d.file) for d in report.diagnostics}
        want = set().union(*(expectations(f) for f in files if f.exists()))
        assert got == want, "\n".join(d.format() for d in report.diagnostics)

    def test_every_case_has_errors_or_warnings(self) -> None:
        """The annotated set covers the rule families the issue names."""
        codes = {code for name in ANNOTATED for _, _, _, code in expectations(CASES / name)}
        for needed in ("duplicate-key", "unknown-server", "unknown-terminal",
                       "direction-mismatch", "fan-in-plain-input", "fan-out-plain-output",
                       "multiplexer-to-combiner", "required-unconnected", "message-too-large",
                       "slots-not-power-of-two", "dependency-cycle", "unknown-dependency",
                       "command-not-found", "command-not-executable", "python-entry",
                       "identity", "unused-output", "oversized-pipe"):
            assert needed in codes


class TestDocumented:
    """The README's lint table and the code agree."""

    def test_every_code_seen_is_documented(self) -> None:
        """Each code the cases produce appears in the README's wiring section."""
        readme = (CASES.parents[1] / "README.md").read_text()
        section = readme.split("## Wiring files, lint and plan", 1)[1].split("\n## ", 1)[0]
        documented = set(re.findall(r"`([a-z]+(?:-[a-z]+)*)`", section))
        seen = {d.code for p in CASES.glob("*.yaml") for d in lint_file(p).diagnostics}
        assert seen - documented == set()
        assert {"too-many-readers", "too-many-writers"} <= documented


class TestDiagnosticsContent:
    """Messages name what and where."""

    def test_cycle_is_named(self) -> None:
        """A dependency cycle lists its members in order."""
        report = lint_file(CASES / "cycles.yaml")
        messages = [d.message for d in report.errors]
        assert any("a -> b -> a" in m for m in messages)
        assert any("d -> e -> f -> d" in m for m in messages)
        assert any("c -> c" in m for m in messages)

    def test_field_and_column(self) -> None:
        """A diagnostic carries the dotted field and the column of the offending node."""
        report = lint_file(CASES / "types.yaml")
        by_field = {d.field: d for d in report.diagnostics}
        env = by_field["servers.b.env.RATE"]
        assert (env.line, env.column) == (18, 7)
        assert by_field["servers.a.command[1]"].column == 30

    def test_yaml_boolean_name_hint(self) -> None:
        """A server called `on` (a YAML boolean) gets a hint to quote it."""
        report = lint_file(CASES / "types.yaml")
        (diag,) = [d for d in report.errors if d.field == "servers.True"]
        assert "quote it" in diag.message

    def test_suggestion_for_typo(self) -> None:
        """An unknown server close to a known one gets a 'did you mean'."""
        report = lint_file(CASES / "references.yaml")
        assert any("did you mean 'relay2'" in d.message for d in report.errors)

    def test_sorted_by_position(self) -> None:
        """Diagnostics come in file, line, column order."""
        report = lint_file(CASES / "types.yaml")
        keys = [(d.file, d.line, d.column) for d in report.diagnostics]
        assert keys == sorted(keys)


class TestDocumentLevel:
    """Files that are not a wiring mapping at all."""

    @pytest.mark.parametrize(("name", "code", "line"), [
        ("syntax.yaml", "yaml-syntax", 3),
        ("multidoc.yaml", "yaml-syntax", 2),
        ("empty.yaml", "empty-file", 0),
        ("toplist.yaml", "type", 1),
    ])
    def test_single_located_error(self, name: str, code: str, line: int) -> None:
        """The whole-file problem is one error at its line."""
        report = lint_file(CASES / name)
        assert [(d.code, d.line) for d in report.diagnostics] == [(code, line)]

    def test_missing_file(self, tmp_path: Path) -> None:
        """A file that does not exist is a diagnostic, not an exception."""
        report = lint_file(tmp_path / "nope.yaml")
        assert [d.code for d in report.diagnostics] == ["file-not-found"]


class TestClean:
    """A coherent system passes."""

    def test_ok_file_is_clean(self) -> None:
        """The reference system has no diagnostics at all."""
        assert lint_file(CASES / "ok.yaml").diagnostics == ()

    def test_load_checked_raises_with_every_error(self) -> None:
        """load_checked raises WiringError carrying all errors, first one in the message."""
        with pytest.raises(WiringError, match=r"types\.yaml:2:1: error\[invalid-name\]") as info:
            load_checked(CASES / "types.yaml")
        assert len(info.value.diagnostics) == len(lint_file(CASES / "types.yaml").errors)
        assert (info.value.line, info.value.column, info.value.field) == (2, 1, "system")

    def test_warnings_do_not_fail(self, tmp_path: Path) -> None:
        """Warnings alone leave the file usable: load_checked returns it."""
        text = (CASES / "ok.yaml").read_text()
        text = text.replace('python_path: ["."]', f"python_path: [{json.dumps(str(CASES))}]")
        text = text.replace("  - worker_b.results -> sink.results\n", "")
        path = tmp_path / "warn.yaml"
        path.write_text(text)
        report = lint_file(path)
        assert report.ok and [d.code for d in report.warnings] == ["unused-output"]
        assert load_checked(path).system == "t"


class TestPeerLimits:
    """More readers or writers than a pipe allows."""

    def _write(self, tmp_path: Path, n: int, fan: str) -> Path:
        servers = [f"  w{i}: {{python: \"lintcase_servers:worker\"}}" for i in range(n)]
        if fan == "out":  # one multiplexer, n readers; the workers' results stay unread
            servers.append("  source: {python: \"lintcase_servers:source\"}")
            conns = [f"  - source.frames -> w{i}.frames" for i in range(n)]
        else:  # one combiner, n writers, each worker fed by its own source
            servers.append("  sink: {python: \"lintcase_servers:sink\"}")
            servers += [f"  s{i}: {{python: \"lintcase_servers:source\"}}" for i in range(n)]
            conns = [f"  - w{i}.results -> sink.results" for i in range(n)]
            conns += [f"  - s{i}.frames -> w{i}.frames" for i in range(n)]
        path = tmp_path / f"fan_{fan}_{n}.yaml"
        path.write_text(f"system: fan\npython_path: [{json.dumps(str(CASES))}]\nservers:\n"
                        + "\n".join(servers) + "\nconnections:\n" + "\n".join(conns) + "\n")
        return path

    @pytest.mark.parametrize(("fan", "code"), [("out", "too-many-readers"),
                                               ("in", "too-many-writers")])
    def test_limit(self, tmp_path: Path, fan: str, code: str) -> None:
        """32 peers pass; the 33rd connection is the error, at its line."""
        assert lint_file(self._write(tmp_path, MAX_PEERS, fan)).ok
        report = lint_file(self._write(tmp_path, MAX_PEERS + 1, fan))
        assert [d.code for d in report.errors] == [code]
        assert report.errors[0].field == f"connections[{MAX_PEERS}]"


class TestFindCycles:
    """The cycle finder is deterministic and exact."""

    def test_no_cycle_in_long_chain(self) -> None:
        """A 5,000-long chain has no cycle and no recursion error."""
        graph = {f"s{i}": [f"s{i + 1}"] for i in range(5000)}
        graph["s5000"] = []
        assert find_cycles(graph) == []

    def test_long_cycle(self) -> None:
        """A 5,000-long ring is one cycle starting at its smallest name."""
        graph = {f"s{i:04d}": [f"s{(i + 1) % 5000:04d}"] for i in range(5000)}
        (cycle,) = find_cycles(graph)
        assert cycle[0] == "s0000" and len(cycle) == 5000


class TestCli:
    """``pykernel lint``: exit status and output."""

    def test_errors_exit_1_with_lines(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Errors print one located line each and exit 1."""
        assert run_cli(["lint", str(CASES / "cycles.yaml")]) == 1
        out = capsys.readouterr().out.splitlines()
        assert out[-1].endswith("3 errors, 0 warnings")
        assert re.match(r".*cycles\.yaml:7:5: error\[dependency-cycle\] servers\.a\.depends_on:",
                        out[0])

    def test_clean_exit_0(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A clean file exits 0 and says ok."""
        assert run_cli(["lint", str(CASES / "ok.yaml")]) == 0
        assert capsys.readouterr().out.strip().endswith("ok.yaml: ok")

    def test_json(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--json lists every diagnostic with severity, code, message, file, line, column, field."""
        assert run_cli(["lint", "--json", str(CASES / "usage.yaml")]) == 1
        data = json.loads(capsys.readouterr().out)
        assert data["ok"] is False and data["errors"] == 1 and data["warnings"] == 2
        first = data["diagnostics"][0]
        assert set(first) == {"severity", "code", "message", "file", "line", "column", "field"}
        assert (first["line"], first["code"], first["severity"]) == (5, "unused-output",
                                                                     "warning")

    def test_plan_on_bad_file_is_one_line(self, capsys: pytest.CaptureFixture[str]) -> None:
        """`pykernel plan` on a file with errors prints one line and exits 1."""
        assert run_cli(["plan", str(CASES / "cycles.yaml")]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1
        assert "dependency-cycle" in err[0] and "and 2 more errors" in err[0]
