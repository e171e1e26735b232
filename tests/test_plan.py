"""The plan: resolved, deterministic, byte for byte, and readable back."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from test_lint import run_cli  # the in-process `pykernel` with this package's verbs

from control.errors import PlanError, WiringError
from control.plan import Plan, build_plan, connection_id
from control.wiring_read import read_wiring

ROOT = Path(__file__).resolve().parents[1]
CASES = Path(__file__).parent / "lint_cases"
OK = CASES / "ok.yaml"


def plan_in_subprocess(path: Path, seed: str) -> bytes:
    """Plan ``path`` in a fresh interpreter with ``PYTHONHASHSEED=seed``."""
    env = dict(os.environ, PYTHONHASHSEED=seed,
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    code = ("import sys; from control.plan import build_plan; "
            "sys.stdout.write(build_plan(sys.argv[1]).to_json())")
    done = subprocess.run([sys.executable, "-c", code, str(path)], env=env, capture_output=True,
                          timeout=60, check=True)
    return done.stdout


class TestDeterminism:
    """The same file gives the same bytes."""

    def test_across_hash_seeds(self) -> None:
        """Fresh interpreters with different PYTHONHASHSEED values agree byte for byte."""
        outputs = {plan_in_subprocess(OK, seed) for seed in ("0", "4242", "random")}
        assert len(outputs) == 1
        assert outputs.pop().decode() == build_plan(OK).to_json()

    def test_file_order_does_not_matter(self, tmp_path: Path) -> None:
        """Servers, connections and keys written in another order give the same plan."""
        data = yaml.safe_load(OK.read_text())
        data["python_path"] = [str(CASES)]
        flipped = {key: data[key] for key in reversed(list(data))}
        flipped["servers"] = dict(reversed(list(data["servers"].items())))
        flipped["connections"] = list(reversed(data["connections"]))
        a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
        a.write_text(yaml.safe_dump(data, sort_keys=False))
        b.write_text(yaml.safe_dump(flipped, sort_keys=False))
        assert a.read_text() != b.read_text()
        assert build_plan(a).to_json() == build_plan(b).to_json()

    def test_round_trip(self) -> None:
        """from_json(to_json(plan)) is the same plan, and writes the same bytes."""
        plan = build_plan(OK)
        again = Plan.from_json(plan.to_json())
        assert again == plan and again.to_json() == plan.to_json()


@pytest.fixture(scope="module")
def plan() -> Plan:
    """The reference system's plan."""
    return build_plan(OK)


class TestContent:
    """What the plan resolves."""

    def test_pipes(self, plan: Plan) -> None:
        """A multiplexer and a combiner pipe, named after the terminal that owns each."""
        pipes = {p.name: p for p in plan.pipes}
        assert set(pipes) == {"t.source.frames", "t.sink.results"}
        mux, comb = pipes["t.source.frames"], pipes["t.sink.results"]
        assert (mux.shape, mux.max_readers, mux.max_writers, mux.slot_size, mux.slots) == (
            "multiplexer", 2, 1, 4096, 128)
        assert (comb.shape, comb.max_readers, comb.max_writers, comb.slots) == (
            "combiner", 1, 2, 512)
        assert (comb.mode, comb.lossy) == (0o600, False)

    def test_connection_ids(self, plan: Plan) -> None:
        """IDs are c- plus 12 hex of sha256 over 'src.term->dst.term'."""
        want = "c-" + hashlib.sha256(b"source.frames->worker_a.frames").hexdigest()[:12]
        assert connection_id("source.frames", "worker_a.frames") == want
        ids = {(c.source, c.target): c.id for c in plan.connections}
        assert ids[("source.frames", "worker_a.frames")] == want
        assert len(set(ids.values())) == 4

    def test_bindings_and_environment(self, plan: Plan) -> None:
        """Each server gets its terminals as bindings and in PYKERNEL_TERMINALS."""
        worker = plan.server("worker_a")
        assert {n: (b.pipe, b.role) for n, b in worker.terminals.items()} == {
            "frames": ("t.source.frames", "reader"), "results": ("t.sink.results", "writer")}
        env = worker.env
        assert env["PYKERNEL_SYSTEM"] == "t" and env["PYKERNEL_SERVER"] == "worker_a"
        assert env["PYKERNEL_CONNECTOME"] == plan.connectome_id
        assert json.loads(env["PYKERNEL_TERMINALS"]) == {
            n: b.to_dict() for n, b in worker.terminals.items()}
        assert json.loads(env["PYKERNEL_TERMINALS"])["frames"]["shape"] == [1024]
        assert env["PYTHONPATH"] == str(CASES)
        assert list(env) == sorted(env)
        assert plan.server("source").env["RATE"] == "100"

    def test_start_order(self, plan: Plan) -> None:
        """Dependencies first, ties broken by name."""
        assert plan.start_order == ("sink", "worker_a", "worker_b", "source")

    def test_python_server_record(self, plan: Plan) -> None:
        """A python server has its entry, no argv, and cwd at the wiring file."""
        sink = plan.server("sink")
        assert (sink.kind, sink.entry, sink.argv, sink.cwd) == (
            "python", "lintcase_servers:sink", (), str(CASES))
        assert sink.manifest.auth_mechanism == "token"

    def test_unknown_server(self, plan: Plan) -> None:
        """Asking for a server the plan lacks is a KeyError."""
        with pytest.raises(KeyError, match="nobody"):
            plan.server("nobody")


class TestConnectomeId:
    """The connectome ID follows the graph, not the run settings."""

    def _variant(self, tmp_path: Path, old: str, new: str) -> str:
        text = OK.read_text().replace('python_path: ["."]',
                                      f"python_path: [{json.dumps(str(CASES))}]")
        assert old in text
        path = tmp_path / "v.yaml"
        path.write_text(text.replace(old, new))
        return build_plan(path).connectome_id

    def test_graph_change_changes_id(self, tmp_path: Path) -> None:
        """Another slot count is another connectome."""
        assert self._variant(tmp_path, "slots: 512", "slots: 1024") != build_plan(
            OK).connectome_id

    def test_run_settings_keep_id(self, tmp_path: Path) -> None:
        """Restart policy and environment are not part of the graph."""
        base = self._variant(tmp_path, "restart: on-failure", "restart: on-failure")
        assert self._variant(tmp_path, "restart: on-failure", "restart: always") == base
        assert self._variant(tmp_path, 'RATE: "100"', 'RATE: "5"') == base


class TestDemo:
    """The demo system a newcomer runs first."""

    def test_demo_plans(self) -> None:
        """examples/demo.yaml is lint-clean and plans a multiplexer and a combiner."""
        plan = build_plan(ROOT / "examples" / "demo.yaml")
        assert {p.shape for p in plan.pipes} == {"multiplexer", "combiner"}
        assert plan.start_order[-1] == "source"
        assert {c.target for c in plan.connections} == {
            "worker_a.frames", "worker_b.frames", "sink.results"}


class TestErrors:
    """Bad input is a typed error naming what and where."""

    def test_lint_errors_refuse_plan(self) -> None:
        """A file with lint errors gives WiringError, not a plan."""
        with pytest.raises(WiringError, match=r"cycles\.yaml:7:5: .*dependency-cycle"):
            build_plan(CASES / "cycles.yaml")

    def test_wiring_object_is_checked(self) -> None:
        """A Wiring passed in directly still gets the graph rules."""
        wiring, _ = read_wiring(CASES / "directions.yaml")
        assert wiring is not None
        with pytest.raises(WiringError, match=r"direction-mismatch") as info:
            build_plan(wiring)
        assert len(info.value.diagnostics) == 6

    @pytest.mark.parametrize(("mutate", "match"), [
        (lambda d: d.pop("pipes"), r"plan: missing field 'pipes'"),
        (lambda d: d.update(version=9), r"plan\.version: unsupported version 9"),
        (lambda d: d["pipes"][0].update(slots="many"), r"plan\.pipes\[0\]\.slots: wrong type"),
        (lambda d: d["pipes"][0].update(slots=True), r"plan\.pipes\[0\]\.slots: wrong type"),
        (lambda d: d["servers"][1]["manifest"].update(class_hex="zz"),
         r"plan\.servers\[1\]\.manifest: class_hex 'zz' must match"),
        (lambda d: d["servers"][0]["terminals"]["results"].pop("pipe"),
         r"plan\.servers\[0\]\.terminals\.results: missing field 'pipe'"),
        (lambda d: d["servers"][0]["env"].update(X=1), r"plan\.servers\[0\]\.env: values"),
        (lambda d: d["pipes"][0].update(shape="ring"), r"plan\.pipes\[0\]\.shape: 'ring' is not"),
        (lambda d: d["servers"][2].update(restart="sometimes"),
         r"plan\.servers\[2\]\.restart: 'sometimes' is not one of"),
        (lambda d: d["servers"][2].update(backoff_max=10**400),
         r"plan\.servers\[2\]\.backoff_max: .* is not a delay"),
    ])
    def test_from_json_names_the_field(self, mutate: Any, match: str) -> None:
        """Each malformed plan names its field."""
        data = json.loads(build_plan(OK).to_json())
        mutate(data)
        with pytest.raises(PlanError, match=match):
            Plan.from_json(json.dumps(data))

    def test_not_json(self) -> None:
        """Text that is not JSON is a PlanError."""
        with pytest.raises(PlanError, match="plan is not valid JSON"):
            Plan.from_json("{nope")

    @settings(max_examples=100, deadline=None)
    @given(st.data())
    def test_fuzzed_plans(self, data: st.DataObject) -> None:
        """Replacing any value of a plan gives a Plan or a PlanError, nothing else."""
        doc = json.loads(build_plan(OK).to_json())
        node: Any = doc
        while isinstance(node, dict | list) and node:
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            key = data.draw(st.sampled_from(keys))
            if data.draw(st.booleans()) or not isinstance(node[key], dict | list):
                node[key] = data.draw(st.none() | st.booleans() | st.integers()
                                      | st.text(max_size=5) | st.lists(st.integers(),
                                                                       max_size=2))
                break
            node = node[key]
        with contextlib.suppress(PlanError):
            Plan.from_json(json.dumps(doc))


class TestCli:
    """``pykernel plan``."""

    def test_json_is_canonical_plan(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--json prints exactly Plan.to_json()."""
        assert run_cli(["plan", "--json", str(OK)]) == 0
        assert capsys.readouterr().out == build_plan(OK).to_json()

    def test_human_summary(self, capsys: pytest.CaptureFixture[str]) -> None:
        """The summary names the start order, pipes and connection IDs."""
        assert run_cli(["plan", str(OK)]) == 0
        out = capsys.readouterr().out
        assert "start order: sink -> worker_a -> worker_b -> source" in out
        assert "t.source.frames" in out and "multiplexer 128 x 4096 B" in out
        assert connection_id("worker_b.results", "sink.results") in out
