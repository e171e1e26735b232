"""The state machine: lifecycles as data, legal and illegal moves, events, derived moves."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_surface_kit import booted, plan_of

from control.errors import ControlError
from control.state import Flow, SystemState
from control.state_model import (
    CONNECTION,
    KERNEL,
    LIFECYCLES,
    SERVER,
    IllegalTransition,
    Lifecycle,
    StateError,
    UnknownSubject,
)
from pykernel import PykernelError


@pytest.fixture
def plan(tmp_path: Path):  # type: ignore[no-untyped-def]
    return plan_of(tmp_path)


class TestLifecycles:
    """The tables themselves."""

    def test_kinds_and_initial_states(self) -> None:
        """Kernel, server and connection lifecycles start where the issue says."""
        assert set(LIFECYCLES) == {"kernel", "server", "connection"}
        assert (KERNEL.initial, SERVER.initial, CONNECTION.initial) == (
            "booting", "declared", "planned")
        assert KERNEL.states == ("booting", "running", "degraded", "stopping", "stopped")
        assert SERVER.states == ("declared", "starting", "ready", "running", "backoff",
                                 "failed", "stopped")
        assert CONNECTION.states == ("planned", "open", "flowing", "stalled", "broken",
                                     "closed")

    def test_final_states_have_no_moves_out(self) -> None:
        """Nothing leaves a final state (stopped kernel, closed connection)."""
        for lc in LIFECYCLES.values():
            for final in lc.final:
                assert not [m for m in lc.moves if m[0] == final]

    def test_every_state_is_reachable(self) -> None:
        """Each state can be reached from the initial one."""
        for lc in LIFECYCLES.values():
            seen, todo = {lc.initial}, [lc.initial]
            while todo:
                here = todo.pop()
                for a, b in lc.moves:
                    if a == here and b not in seen:
                        seen.add(b)
                        todo.append(b)
            assert seen == set(lc.states), lc.kind

    def test_table_with_unknown_state_is_rejected(self) -> None:
        """A lifecycle naming a state it does not have cannot be built."""
        with pytest.raises(ValueError, match="unknown state"):
            Lifecycle("x", ("a", "b"), "a", frozenset({("a", "c")}))

    def test_to_json_lists_moves(self) -> None:
        """The JSON form carries every move, sorted."""
        data = SERVER.to_json()
        assert ["running", "stopped"] in data["moves"]
        assert data["moves"] == sorted(data["moves"])

    def test_errors_are_typed(self) -> None:
        """State errors sit under ControlError and PykernelError."""
        assert issubclass(IllegalTransition, StateError)
        assert issubclass(StateError, ControlError)
        assert issubclass(UnknownSubject, PykernelError)


class TestFromPlan:
    """The initial state comes from the plan."""

    def test_initial_states(self, plan) -> None:  # type: ignore[no-untyped-def]
        """Kernel booting, servers declared, connections planned, connectome from the plan."""
        state = SystemState.from_plan(plan)
        assert state.kernel_state == "booting"
        assert {s["state"] for s in state.servers_json()} == {"declared"}
        assert {c["state"] for c in state.connections_json()} == {"planned"}
        cx = state.connectome_json()
        assert (cx["id"], cx["version"]) == (plan.connectome_id, 1)
        assert [c["id"] for c in state.connections_json()] == sorted(
            c.id for c in plan.connections)

    def test_terminals_carry_pipe_and_role(self, plan) -> None:  # type: ignore[no-untyped-def]
        """Connected terminals name their pipe and role; spare ones have none."""
        terms = {t["id"]: t for t in SystemState.from_plan(plan).terminals_json()}
        assert terms["src.out"]["role"] == "writer"
        assert terms["src.out"]["pipe"] == "t.src.out"
        assert len(terms["src.out"]["connections"]) == 2
        assert terms["sink.inp"]["role"] == "reader"
        assert terms["spare.out"]["pipe"] is None
        assert terms["spare.arr"]["dtype"] == "float32"

    def test_pipes_carry_geometry(self, plan) -> None:  # type: ignore[no-untyped-def]
        """Pipes list their shape, slots and the connections they carry."""
        pipes = {p["name"]: p for p in SystemState.from_plan(plan).pipes_json()}
        assert pipes["t.src.out"]["shape"] == "multiplexer"
        assert pipes["t.sink.inp"]["shape"] == "combiner"
        assert len(pipes["t.sink.inp"]["connections"]) == 2


class TestMoves:
    """Legal moves happen and are events; illegal ones change nothing."""

    def test_legal_server_moves_are_events(self, plan) -> None:  # type: ignore[no-untyped-def]
        """Each move is logged with time, from, to and cause."""
        state = SystemState.from_plan(plan)
        before = time.time()
        state.server_to("a", "starting", "executor: launched", pid=4242)
        state.server_to("a", "ready", "executor: attached")
        events = [e for e in state.events_json() if e["kind"] == "server"]
        assert [(e["from"], e["to"], e["cause"]) for e in events] == [
            ("declared", "starting", "executor: launched"),
            ("starting", "ready", "executor: attached")]
        assert all(e["time"] >= before - 1e-3 for e in events)
        assert state.server_json("a")["pid"] == 4242
        assert state.server_json("a")["starts"] == 1

    def test_a_server_carries_the_reason_of_its_last_move(self, plan) -> None:  # type: ignore[no-untyped-def]
        """Why a server failed is on the server itself, not only in the event log."""
        state = SystemState.from_plan(plan)
        assert state.server_json("a")["reason"] == ""
        state.server_to("a", "starting", "executor: launched", pid=7)
        state.server_to("a", "failed", "exit code 78 (EX_CONFIG: configuration error)")
        assert state.server_json("a")["reason"] == "exit code 78 (EX_CONFIG: configuration error)"
        illegal = state.server_json("a")
        with pytest.raises(IllegalTransition):
            state.server_to("a", "ready", "never")
        assert state.server_json("a") == illegal

    def test_illegal_server_move_is_refused(self, plan) -> None:  # type: ignore[no-untyped-def]
        """declared -> running skips starting: refused, state and log unchanged."""
        state = SystemState.from_plan(plan)
        n = len(state.events())
        with pytest.raises(IllegalTransition, match=r"server 'a': illegal transition "
                                                    r"declared -> running"):
            state.server_to("a", "running", "test")
        assert state.server_json("a")["state"] == "declared"
        assert len(state.events()) == n

    def test_unknown_target_state_is_illegal(self, plan) -> None:  # type: ignore[no-untyped-def]
        """A state name that does not exist is an illegal transition."""
        state = SystemState.from_plan(plan)
        with pytest.raises(IllegalTransition, match="declared -> dancing"):
            state.server_to("a", "dancing", "test")

    def test_unknown_server(self, plan) -> None:  # type: ignore[no-untyped-def]
        """Moving a server that does not exist names it."""
        with pytest.raises(UnknownSubject, match="unknown server 'nope'"):
            SystemState.from_plan(plan).server_to("nope", "starting", "test")

    def test_same_state_is_no_event(self, plan) -> None:  # type: ignore[no-untyped-def]
        """Asking for the current state returns None and logs nothing."""
        state = SystemState.from_plan(plan)
        n = len(state.events())
        assert state.kernel_to("booting", "again") is None
        assert len(state.events()) == n

    def test_stopped_kernel_is_final(self, plan) -> None:  # type: ignore[no-untyped-def]
        """A stopped kernel cannot run again."""
        state = SystemState.from_plan(plan)
        state.kernel_to("stopping", "signal")
        state.kernel_to("stopped", "done")
        with pytest.raises(IllegalTransition, match="stopped -> running"):
            state.kernel_to("running", "test")

    def test_closed_connection_cannot_reopen(self, plan) -> None:  # type: ignore[no-untyped-def]
        """planned -> closed is final."""
        state = SystemState.from_plan(plan)
        cid = state.connections_json()[0]["id"]
        state.connection_to(cid, "closed", "test")
        with pytest.raises(IllegalTransition, match="closed -> open"):
            state.connection_to(cid, "open", "test")

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.tuples(st.sampled_from(["kernel", "server", "connection"]),
                              st.sampled_from(sorted({s for lc in LIFECYCLES.values()
                                                      for s in lc.states}))), max_size=30))
    def test_random_moves_obey_the_tables(self, tmp_path_factory, moves) -> None:  # type: ignore[no-untyped-def]
        """Any sequence of requests: accepted iff the table allows it, log matches."""
        plan = _PLAN.get("p") or _PLAN.setdefault("p", plan_of(tmp_path_factory.mktemp("p")))
        state = SystemState.from_plan(plan)
        cid = state.connections_json()[0]["id"]
        for kind, target in moves:
            current = {"kernel": lambda: state.kernel_state,
                       "server": lambda: state.server_json("spare")["state"],
                       "connection": lambda: state.connection_json(cid)["state"]}[kind]()
            before = len(state.events())
            move = {"kernel": lambda t: state.kernel_to(t, "fuzz"),
                    "server": lambda t: state.server_to("spare", t, "fuzz"),
                    "connection": lambda t: state.connection_to(cid, t, "fuzz")}[kind]
            if current == target:
                assert move(target) is None
            elif LIFECYCLES[kind].allows(current, target):
                event = move(target)
                assert event is not None and (event.source, event.target) == (current, target)
            else:
                with pytest.raises(IllegalTransition):
                    move(target)
                assert len(state.events()) == before
        seqs = [e.seq for e in state.events()]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


_PLAN: dict[str, object] = {}


class TestDerivedMoves:
    """Server moves drive connections and the kernel's health."""

    def test_open_pipes(self, plan) -> None:  # type: ignore[no-untyped-def]
        """open_pipes moves every planned connection to open."""
        state = SystemState.from_plan(plan)
        state.open_pipes()
        assert {c["state"] for c in state.connections_json()} == {"open"}

    def test_stopped_server_breaks_its_connections(self, plan) -> None:  # type: ignore[no-untyped-def]
        """Stopping worker a breaks a's two connections only; starting again reopens them."""
        state = booted(plan)
        state.server_to("a", "stopped", "api: stop")
        by_state = {c["id"]: c["state"] for c in state.connections_json()}
        mine = {c["id"] for c in state.connections_json() if "a." in (c["source"][:2],
                                                                        c["target"][:2])}
        assert {by_state[i] for i in mine} == {"broken"}
        assert {s for i, s in by_state.items() if i not in mine} == {"open"}
        causes = [e["cause"] for e in state.events_json() if e["subject"] in mine]
        assert "server a stopped" in causes
        state.server_to("a", "starting", "api: start", pid=1)
        state.server_to("a", "running", "attached")
        assert {c["state"] for c in state.connections_json()} == {"open"}

    def test_failed_server_degrades_kernel(self, plan) -> None:  # type: ignore[no-untyped-def]
        """A failing server degrades a running kernel; its recovery restores it."""
        state = booted(plan)
        state.server_to("b", "backoff", "executor: exit status 1")
        assert state.kernel_state == "degraded"
        state.server_to("b", "starting", "executor: restart")
        state.server_to("b", "running", "attached")
        assert state.kernel_state == "running"
        kernel_moves = [(e["from"], e["to"]) for e in state.events_json()
                        if e["kind"] == "kernel"]
        assert kernel_moves[-2:] == [("running", "degraded"), ("degraded", "running")]

    def test_stopped_server_does_not_degrade(self, plan) -> None:  # type: ignore[no-untyped-def]
        """An operator's stop is not a failure."""
        state = booted(plan)
        state.server_to("b", "stopped", "api: stop")
        assert state.kernel_state == "running"


class TestFlowAndWaiting:
    """Flow records and change notification."""

    def test_flow_moves_only_live_connections(self, plan) -> None:  # type: ignore[no-untyped-def]
        """set_flow moves open/flowing/stalled, never planned or broken."""
        state = SystemState.from_plan(plan)
        cid = state.connections_json()[0]["id"]
        state.set_flow(cid, Flow(messages=5), "flowing", "flow")
        assert state.connection_json(cid)["state"] == "planned"
        assert state.connection_json(cid)["flow"]["messages"] == 5
        state.open_pipes()
        state.set_flow(cid, Flow(messages=6, msgs_per_s=12.5), "flowing", "flow")
        got = state.connection_json(cid)
        assert (got["state"], got["flow"]["msgs_per_s"]) == ("flowing", 12.5)

    def test_flow_for_a_gone_connection_is_ignored(self, plan) -> None:  # type: ignore[no-untyped-def]
        """A sample racing a disconnect does not raise."""
        SystemState.from_plan(plan).set_flow("c-000000000000", Flow(), "flowing", "flow")

    def test_wait_change_wakes_on_a_move(self, plan) -> None:  # type: ignore[no-untyped-def]
        """A waiter wakes as soon as something changes, long before its timeout."""
        state = SystemState.from_plan(plan)
        rev = state.revision
        threading.Timer(0.05, lambda: state.server_to("a", "starting", "t")).start()
        t0 = time.monotonic()
        assert state.wait_change(rev, 5.0) != rev
        assert time.monotonic() - t0 < 2.0

    def test_wait_change_times_out(self, plan) -> None:  # type: ignore[no-untyped-def]
        """Without a change the waiter returns the same revision."""
        state = SystemState.from_plan(plan)
        assert state.wait_change(state.revision, 0.05) == state.revision

    def test_events_since_and_limit(self, plan) -> None:  # type: ignore[no-untyped-def]
        """events_json pages by sequence number."""
        state = booted(plan)
        all_events = state.events_json()
        assert state.events_json(since=all_events[2]["seq"], limit=2) == all_events[3:5]


class TestInvariants:
    """Whatever legal moves the servers make, connections and kernel stay consistent."""

    @settings(max_examples=150, deadline=None)
    @given(st.lists(st.tuples(st.sampled_from(["src", "a", "b", "sink", "spare"]),
                              st.integers(0, 6)), max_size=40))
    def test_connections_and_kernel_follow_servers(self, tmp_path_factory, moves) -> None:  # type: ignore[no-untyped-def]
        """A down end breaks a connection, two up ends open it; failures degrade the kernel."""
        plan = _PLAN.get("p") or _PLAN.setdefault("p", plan_of(tmp_path_factory.mktemp("p")))
        state = booted(plan)
        for name, pick in moves:
            current = state.server_json(name)["state"]
            targets = sorted(b for a, b in SERVER.moves if a == current)
            if not targets:
                continue
            state.server_to(name, targets[pick % len(targets)], "fuzz", pid=1)
            servers = {s["name"]: s["state"] for s in state.servers_json()}
            for c in state.connections_json():
                ends = {servers[c["source"].split(".")[0]], servers[c["target"].split(".")[0]]}
                if ends & {"backoff", "failed", "stopped"}:
                    assert c["state"] == "broken", (c, servers)
                if ends <= {"ready", "running"}:
                    assert c["state"] != "broken", (c, servers)
            unhealthy = bool(set(servers.values()) & {"backoff", "failed"})
            assert state.kernel_state == ("degraded" if unhealthy else "running")
