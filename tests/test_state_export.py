"""The running system as a wiring: export, re-plan, and plans for a kernel's connect."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_surface_kit import booted, plan_of, write_wiring

from control.errors import WiringError
from control.lint import lint_file
from control.plan import build_plan
from control.state_export import (
    check_disconnect,
    check_new_connection,
    current_plan,
    export_yaml,
    plan_connect,
    plan_disconnect,
)
from control.state_model import UnknownSubject


class TestExport:
    """export_yaml and current_plan."""

    def test_round_trip_from_another_directory(self, tmp_path: Path) -> None:
        """The export lints clean and plans byte-identically wherever it is written."""
        plan = plan_of(tmp_path)
        other = tmp_path / "elsewhere" / "deep"
        other.mkdir(parents=True)
        path = other / "exported.yaml"
        path.write_text(export_yaml(booted(plan)))
        assert lint_file(path).ok
        assert build_plan(path).to_json() == plan.to_json()

    def test_current_plan_is_the_plan(self, tmp_path: Path) -> None:
        """Re-planning the untouched running system gives the boot plan."""
        plan = plan_of(tmp_path)
        assert current_plan(booted(plan)).to_json() == plan.to_json()


class TestPlansForTheKernel:
    """plan_connect / plan_disconnect give a kernel everything it needs."""

    def test_plain_connect(self, tmp_path: Path) -> None:
        """A new plain connection: its own pipe, both servers' terminals bound."""
        state = booted(plan_of(tmp_path))
        plan, conn, pipe = plan_connect(state, "spare.out", "spare.inp")
        assert (conn.source, conn.target, conn.pipe) == ("spare.out", "spare.inp", pipe.name)
        assert (pipe.shape, pipe.slot_size) == ("one", 64)
        terms = json.loads(plan.server("spare").env["PYKERNEL_TERMINALS"])
        assert terms["out"]["role"] == "writer" and terms["inp"]["role"] == "reader"

    def test_fan_out_grows_the_pipe(self, tmp_path: Path) -> None:
        """A third reader on the multiplexer: same pipe, max_readers 3."""
        state = booted(plan_of(tmp_path))
        _, conn, pipe = plan_connect(state, "src.out", "spare.inp")
        assert conn.pipe == pipe.name == "t.src.out"
        assert pipe.max_readers == 3

    def test_illegal_connect_raises_wiring_error(self, tmp_path: Path) -> None:
        """A lint refusal is a WiringError naming the rule."""
        state = booted(plan_of(tmp_path))
        assert [d.code for d in check_new_connection(state, "spare.out", "a.inp")] == [
            "fan-in-plain-input"]
        with pytest.raises(WiringError, match="plain input"):
            plan_connect(state, "spare.out", "a.inp")

    def test_disconnect_plan(self, tmp_path: Path) -> None:
        """Connect then disconnect gives the boot plan back; unknown IDs are named."""
        plan = plan_of(tmp_path)
        state = booted(plan)
        _, conn, pipe = plan_connect(state, "spare.out", "spare.inp")
        state.add_connection(conn, pipe, "test")
        assert check_disconnect(state, conn.id) == []
        assert plan_disconnect(state, conn.id).to_json() == plan.to_json()
        with pytest.raises(UnknownSubject, match="c-nope"):
            plan_disconnect(state, "c-nope")

    def test_disconnect_of_a_required_input(self, tmp_path: Path) -> None:
        """Leaving b.inp (required) unconnected is lint's required-unconnected error."""
        state = booted(plan_of(tmp_path))
        cid = next(c["id"] for c in state.connections_json() if c["target"] == "b.inp")
        assert [d.code for d in check_disconnect(state, cid)] == ["required-unconnected"]
        with pytest.raises(WiringError, match=r"required input terminal b\.inp"):
            plan_disconnect(state, cid)

    def test_wiring_written_twice_is_the_same(self, tmp_path: Path) -> None:
        """The export is deterministic."""
        state = booted(build_plan(write_wiring(tmp_path)))
        assert export_yaml(state) == export_yaml(state)
