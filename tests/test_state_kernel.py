"""The executor → state machine feed, with the executor's own status records."""

from __future__ import annotations

import time
from pathlib import Path

from test_surface_kit import plan_of

from control.state import SystemState
from control.state_kernel import SERVICE_TO_SERVER, ExecutorFeed
from pykernel._supervise import ServiceState, ServiceStatus


def _status(name: str, state: ServiceState, pid: int | None = 77,
            reason: str = "") -> ServiceStatus:
    return ServiceStatus(name=name, state=state, pid=pid, builtin=False, starts=1, restarts=0,
                         last_exit=None, reason=reason, detail="", backoff=0.0,
                         since=time.time(), log_path="")


class TestExecutorFeed:
    """Executor service states become server moves."""

    def test_every_service_state_is_mapped(self) -> None:
        """The map covers exactly the executor's states."""
        assert set(SERVICE_TO_SERVER) == {s.value for s in ServiceState}

    def test_boot_sequence(self, tmp_path: Path) -> None:
        """starting opens the planned pipes; ready/running follow with pid and reason."""
        state = SystemState.from_plan(plan_of(tmp_path))
        feed = ExecutorFeed(state)
        feed(_status("a", ServiceState.PENDING), ServiceState.PENDING)
        assert state.server_json("a")["state"] == "declared"
        feed(_status("a", ServiceState.STARTING, pid=1234), ServiceState.PENDING)
        assert {c["state"] for c in state.connections_json()} == {"open"}
        feed(_status("a", ServiceState.READY, reason="all terminals attached"),
             ServiceState.STARTING)
        got = state.server_json("a")
        assert (got["state"], got["pid"]) == ("ready", 77)
        assert state.events_json()[-1]["cause"] == "executor: all terminals attached"

    def test_stopping_is_no_move_and_builtins_are_ignored(self, tmp_path: Path) -> None:
        """The grace period and the executor's built-ins leave the state alone."""
        state = SystemState.from_plan(plan_of(tmp_path))
        feed = ExecutorFeed(state)
        n = len(state.events())
        feed(_status("housekeeping", ServiceState.RUNNING), ServiceState.READY)
        feed(_status("a", ServiceState.STOPPING), ServiceState.RUNNING)
        assert len(state.events()) == n and feed.refused == 0

    def test_restart_is_bridged_through_starting(self, tmp_path: Path) -> None:
        """failed → running (a restart seen late) goes failed → starting → running."""
        state = SystemState.from_plan(plan_of(tmp_path))
        feed = ExecutorFeed(state)
        for st in (ServiceState.STARTING, ServiceState.FAILED, ServiceState.RUNNING):
            feed(_status("b", st), ServiceState.PENDING)
        moves = [(e["from"], e["to"]) for e in state.events_json() if e["subject"] == "b"]
        assert moves[-2:] == [("failed", "starting"), ("starting", "running")]
        assert feed.refused == 0

    def test_impossible_move_is_counted_not_raised(self, tmp_path: Path) -> None:
        """running → ready cannot be bridged: counted, state unchanged, no exception."""
        state = SystemState.from_plan(plan_of(tmp_path))
        feed = ExecutorFeed(state)
        feed(_status("b", ServiceState.STARTING), ServiceState.PENDING)
        feed(_status("b", ServiceState.RUNNING), ServiceState.STARTING)
        feed(_status("b", ServiceState.READY), ServiceState.RUNNING)
        assert feed.refused == 1 and state.server_json("b")["state"] == "running"
