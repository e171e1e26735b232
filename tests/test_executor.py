"""The executor: boot order, readiness, restart/backoff, shutdown, logs, signals."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pykernel._executor import Executor, builtin_services
from pykernel._supervise import (
    EX_CONFIG,
    RESTART_POLICIES,
    BootError,
    ExecutorError,
    ExecutorPhase,
    ServiceSpec,
    ServiceState,
    ServiceStatus,
    SpecError,
    backoff_delay,
    parse_notify,
    should_restart,
)
from pykernel.liveness import pid_alive

READY = "echo READY=1 >&$PYKERNEL_NOTIFY_FD"


def sh(script: str, name: str, **kw: object) -> ServiceSpec:
    """A service running a bash script (bash: multi-digit fds in redirections)."""
    return ServiceSpec(name=name, argv=("bash", "-c", script), **kw)  # type: ignore[arg-type]


class Recorder:
    """Collects state changes with their monotonic time."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, ServiceState, ServiceState, ServiceStatus]] = []
        self.lock = threading.Lock()

    def __call__(self, status: ServiceStatus, previous: ServiceState) -> None:
        with self.lock:
            self.events.append((time.monotonic(), status.name, previous, status.state, status))

    def when(self, name: str, state: ServiceState, nth: int = 0) -> float:
        hits = [t for t, n, _, s, _ in self.events if n == name and s is state]
        assert len(hits) > nth, f"{name} never reached {state.value} (#{nth}): {self.states()}"
        return hits[nth]

    def states(self, name: str | None = None) -> list[tuple[str, str]]:
        return [(n, s.value) for _, n, _, s, _ in self.events if name in (None, n)]

    def statuses(self, name: str, state: ServiceState) -> list[ServiceStatus]:
        return [st for _, n, _, s, st in self.events if n == name and s is state]


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Callable[..., tuple[Executor, Recorder]]]:
    """Make executors over tmp_path; every one is shut down at the end, even on failure."""
    made: list[Executor] = []

    def make(services: list[ServiceSpec], *, start: bool = True, **kw: object):
        rec = Recorder()
        kw.setdefault("builtins", ())
        ex = Executor(services, run_dir=tmp_path / "run", on_change=rec, **kw)  # type: ignore[arg-type]
        made.append(ex)
        if start:
            ex.start()
        return ex, rec

    yield make
    for ex in made:
        ex.shutdown(timeout=10)


class TestSpec:
    """Service specs are validated field by field, naming the service and field."""

    @pytest.mark.parametrize(
        ("kw", "match"),
        [
            ({"name": "bad name"}, r"service 'bad name': name: must match"),
            ({"name": ""}, r"name: must match"),
            ({"argv": ()}, r"'s': argv: must be a non-empty list"),
            ({"argv": ("",)}, r"argv\[0\]: must not be empty"),
            ({"restart": "sometimes"}, r"restart: 'sometimes' is not one of never, on-failure"),
            ({"backoff_initial": -1.0}, r"backoff_initial: must be finite and >= 0"),
            ({"backoff_initial": float("nan")}, r"backoff_initial: must be finite"),
            ({"backoff_initial": 2.0, "backoff_max": 1.0}, r"backoff_max: must be >= backoff_init"),
            ({"ready_timeout": 0}, r"ready_timeout: must be > 0"),
            ({"stop_grace": "5"}, r"stop_grace: must be a number of seconds, got '5'"),
            ({"depends_on": ("s",)}, r"depends_on: a service cannot depend on itself"),
            ({"depends_on": ("a", "a")}, r"depends_on: lists a service twice"),
            ({"env": {"A=B": "x"}}, r"env: invalid variable name 'A=B'"),
            ({"env": {"A": 1}}, r"env.A: value must be a string"),
        ],
    )
    def test_bad_field_is_named(self, kw: dict[str, object], match: str) -> None:
        """Each invalid field raises SpecError naming the service and the field."""
        fields: dict[str, object] = {"name": "s", "argv": ("true",)}
        fields.update(kw)
        with pytest.raises(SpecError, match=match):
            ServiceSpec(**fields)  # type: ignore[arg-type]

    def test_duplicate_names(self, tmp_path: Path) -> None:
        """Two services with one name are refused."""
        with pytest.raises(SpecError, match=r"'a': name: is used by two services"):
            Executor([sh("true", "a"), sh("true", "a")], run_dir=tmp_path, builtins=())

    def test_unknown_dependency(self, tmp_path: Path) -> None:
        """A dependency on a service that does not exist is refused."""
        with pytest.raises(SpecError, match=r"'a': depends_on: unknown service 'ghost'"):
            Executor([sh("true", "a", depends_on=("ghost",))], run_dir=tmp_path, builtins=())

    def test_cycle_is_named(self, tmp_path: Path) -> None:
        """A dependency cycle is refused with its path."""
        specs = [sh("true", "a", depends_on=("c",)), sh("true", "b", depends_on=("a",)),
                 sh("true", "c", depends_on=("b",))]
        with pytest.raises(SpecError, match=r"dependency cycle a -> c -> b -> a"):
            Executor(specs, run_dir=tmp_path, builtins=())

    @given(st.text(max_size=80))
    def test_any_name_is_accepted_or_refused_cleanly(self, name: str) -> None:
        """Every possible name either validates or raises SpecError (never anything else)."""
        try:
            spec = ServiceSpec(name=name, argv=("true",))
        except SpecError as exc:
            assert "name" in str(exc)
        else:
            assert spec.name == name and "/" not in name and len(name) <= 64

    def test_builtins_are_listed(self) -> None:
        """The built-in list is explicit: housekeeping, restarted always."""
        (house,) = builtin_services()
        assert house.name == "pykernel.housekeeping"
        assert house.restart == "always"


class TestHelpers:
    """Pure helpers: backoff arithmetic and notify line splitting."""

    def test_backoff_doubles_and_caps(self) -> None:
        """Delays double per consecutive failure and stop at the cap."""
        assert [backoff_delay(0.1, 1.0, n) for n in range(1, 7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]

    @given(st.floats(0, 100), st.floats(0, 100), st.integers(-5, 10_000))
    def test_backoff_never_exceeds_cap(self, initial: float, extra: float, n: int) -> None:
        """Whatever the failure count, the delay stays within [0, cap]."""
        cap = initial + extra
        assert 0 <= backoff_delay(initial, cap, n) <= cap

    @given(st.binary(max_size=300), st.lists(st.integers(1, 50), max_size=20))
    def test_notify_chunking_never_matters(self, data: bytes, cuts: list[int]) -> None:
        """Whatever bytes a service writes, in whatever chunks, the same lines come out."""
        whole, rest_whole = parse_notify(data)
        lines: list[bytes] = []
        rest, pos = b"", 0
        for cut in [*cuts, len(data)]:
            chunk, pos = data[pos:pos + cut], pos + cut
            got, rest = parse_notify(rest + chunk)
            lines += got
        assert lines == whole and rest == rest_whole
        assert all(b"\n" not in line and line == line.strip() and line for line in lines)

    def test_notify_keeps_partial_line(self) -> None:
        """A line split across reads is completed by the next read."""
        lines, rest = parse_notify(b"STATUS=a\nREA")
        assert lines == [b"STATUS=a"] and rest == b"REA"
        lines, rest = parse_notify(rest + b"DY=1\n")
        assert lines == [b"READY=1"] and rest == b""


class TestBoot:
    """Boot: built-ins first, then services in dependency order, real processes."""

    def test_dependency_ready_before_dependent_starts(self, run) -> None:
        """B depending on A starts only after A reported ready."""
        a = sh(f"sleep 0.3; {READY}; exec sleep 60", "a")
        b = sh(f"{READY}; exec sleep 60", "b", depends_on=("a",))
        ex, rec = run([b, a])
        assert rec.when("b", ServiceState.STARTING) >= rec.when("a", ServiceState.READY)
        assert ex.status().phase is ExecutorPhase.RUNNING
        assert {s.state for s in ex.status().services} == {ServiceState.RUNNING}

    def test_independent_services_start_side_by_side(self, run) -> None:
        """Services without dependencies between them do not wait for each other."""
        slow = [sh(f"sleep 0.3; {READY}; exec sleep 60", f"s{i}") for i in range(3)]
        t0 = time.monotonic()
        _, rec = run(slow)
        assert time.monotonic() - t0 < 0.85  # sequential would take >= 0.9 s
        assert max(rec.when(f"s{i}", ServiceState.STARTING) for i in range(3)) < min(
            rec.when(f"s{i}", ServiceState.READY) for i in range(3))

    def test_builtins_boot_first(self, run) -> None:
        """Every given service starts after every built-in is ready."""
        builtin = sh(f"sleep 0.2; {READY}; exec sleep 60", "pk.builtin")
        _, rec = run([sh(f"{READY}; exec sleep 60", "user")], builtins=(builtin,))
        assert rec.when("user", ServiceState.STARTING) >= rec.when("pk.builtin", ServiceState.READY)
        assert rec.statuses("pk.builtin", ServiceState.RUNNING)[-1].builtin

    def test_status_reports_pid_and_log(self, run, tmp_path: Path) -> None:
        """The snapshot names each service's pid (a live process) and log path."""
        ex, _ = run([sh(f"{READY}; exec sleep 60", "a")])
        status = ex.status().service("a")
        assert status.pid is not None and pid_alive(status.pid)
        assert status.log_path == str(tmp_path / "run" / "a.log")
        assert ex.status().to_dict()["services"][0]["state"] == "running"

    def test_start_twice_is_refused(self, run) -> None:
        """A started executor cannot be started again."""
        ex, _ = run([sh(f"{READY}; exec sleep 60", "a")])
        with pytest.raises(ExecutorError, match="executor already running"):
            ex.start()


@st.composite
def dags(draw: st.DrawFn) -> list[tuple[str, tuple[str, ...]]]:
    """Random acyclic dependency graphs of up to 6 services, listed in random order."""
    n = draw(st.integers(1, 6))
    nodes = [(f"s{i}", tuple(sorted(draw(st.sets(st.sampled_from([f"s{j}" for j in range(i)]),
                                                 max_size=i)) if i else ())))
             for i in range(n)]
    return draw(st.permutations(nodes))


class TestOrderProperty:
    """For any dependency graph: dependencies are ready before dependents start, and
    dependents have exited before their dependencies get SIGTERM."""

    @settings(max_examples=8, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(dags())
    def test_any_dag(self, tmp_path_factory: pytest.TempPathFactory,
                     graph: list[tuple[str, tuple[str, ...]]]) -> None:
        """Boot and shutdown respect every edge of a random graph."""
        rec = Recorder()
        specs = [sh(f"{READY}; exec sleep 60", name, depends_on=deps) for name, deps in graph]
        ex = Executor(specs, run_dir=tmp_path_factory.mktemp("dag"), builtins=(), on_change=rec)
        try:
            ex.start()
        finally:
            ex.shutdown(timeout=10)
        for name, deps in graph:
            for dep in deps:
                assert rec.when(name, ServiceState.STARTING) >= rec.when(dep, ServiceState.READY)
                assert rec.when(dep, ServiceState.STOPPING) >= rec.when(name, ServiceState.STOPPED)


class TestReadiness:
    """Readiness is READY=1 on PYKERNEL_NOTIFY_FD; failures to get there are clear."""

    def test_waits_for_ready_line(self, run) -> None:
        """start() returns only after the service said READY=1, not at spawn."""
        _, rec = run([sh(f"sleep 0.3; {READY}; exec sleep 60", "a")])
        assert rec.when("a", ServiceState.READY) - rec.when("a", ServiceState.STARTING) >= 0.28

    def test_ready_timeout_fails_boot_and_kills(self, run) -> None:
        """A service silent past its ready_timeout fails the boot; its process is killed."""
        ex, _rec = run([sh("exec sleep 60", "mute", ready_timeout=0.3)], start=False)
        with pytest.raises(BootError, match=r"service 'mute' was not ready within 0.3 s") as info:
            ex.start()
        assert info.value.log_path.endswith("mute.log")
        status = ex.status().service("mute")
        assert status.state is ServiceState.FAILED
        assert status.last_exit == -signal.SIGKILL
        assert ex.status().phase is ExecutorPhase.STOPPED

    def test_near_misses_are_not_ready(self, run) -> None:
        """Only the line READY=1 counts: look-alikes, garbage and an unfinished line do not."""
        noise = r"printf 'READY=0\nREADY=10\nXREADY=1\n\377\000\nREADY=1' >&$PYKERNEL_NOTIFY_FD"
        ex, _ = run([sh(f"{noise}; exec sleep 60", "noisy", ready_timeout=0.3)], start=False)
        with pytest.raises(BootError, match=r"'noisy' was not ready within 0.3 s"):
            ex.start()

    def test_exit_before_ready_fails_boot_with_log_line(self, run) -> None:
        """A crash at boot raises BootError with the exit code and the last log line."""
        ex, _ = run([sh("echo 'config missing' >&2; exit 3", "crash")], start=False)
        with pytest.raises(
            BootError, match=r"'crash' exited before it was ready \(exit code 3\).*config missing"
        ):
            ex.start()

    def test_boot_failure_stops_what_was_started(self, run) -> None:
        """When one service fails at boot, those already running are stopped."""
        ok = sh(f"{READY}; exec sleep 60", "ok")
        bad = sh("exit 1", "bad", depends_on=("ok",))
        ex, _ = run([ok, bad], start=False)
        with pytest.raises(BootError, match="'bad'"):
            ex.start()
        status = ex.status()
        assert status.service("ok").state is ServiceState.STOPPED
        assert status.service("bad").state is ServiceState.FAILED

    def test_missing_command_fails_boot(self, run) -> None:
        """A command that cannot be executed is a boot failure naming it."""
        ex, _ = run([ServiceSpec(name="nope", argv=("no-such-program-pk",))], start=False)
        with pytest.raises(BootError, match=r"'nope' could not be started: .*no-such-program-pk"):
            ex.start()

    def test_without_notify_ready_at_spawn(self, run) -> None:
        """notify=False services are ready as soon as their process exists."""
        ex, _ = run([ServiceSpec(name="plain", argv=("sleep", "60"), notify=False)])
        assert ex.status().service("plain").state is ServiceState.RUNNING

    def test_status_line_is_shown(self, run) -> None:
        """STATUS= lines appear as the service's detail."""
        ex, _ = run([sh(f"{READY}; echo STATUS=warming up >&$PYKERNEL_NOTIFY_FD; exec sleep 60",
                        "a")])
        wait_for(lambda: ex.status().service("a").detail == "warming up")


class TestRestart:
    """Restart policies with exponential backoff and a cap."""

    def test_on_failure_backs_off_exponentially_with_cap(self, run) -> None:
        """A service that keeps failing is restarted after 0.05, 0.1, 0.2, 0.2, 0.2 s."""
        first = 'touch "$PYKERNEL_RUN_DIR/booted"; sleep 0.05'  # stay up long enough to boot
        script = f'{READY}; [ -e "$PYKERNEL_RUN_DIR/booted" ] || {{ {first}; }}; exit 3'
        _, rec = run([sh(script, "flaky", restart="on-failure",
                         backoff_initial=0.05, backoff_max=0.2)])
        wait_for(lambda: len(rec.statuses("flaky", ServiceState.BACKOFF)) >= 5)
        backoffs = rec.statuses("flaky", ServiceState.BACKOFF)[:5]
        assert [s.backoff for s in backoffs] == [0.05, 0.1, 0.2, 0.2, 0.2]
        assert all(s.reason.startswith("exit code 3; restart in") for s in backoffs)
        entered = [t for t, n, _, s, _ in rec.events if n == "flaky" and s is ServiceState.BACKOFF]
        starts = [t for t, n, _, s, _ in rec.events if n == "flaky" and s is ServiceState.STARTING]
        for i, status in enumerate(backoffs[:4]):
            assert starts[i + 1] - entered[i] >= status.backoff * 0.95

    def test_backoff_resets_after_staying_up(self, run) -> None:
        """A run that stayed up at least backoff_max starts the delays over."""
        script = ('n=$(cat "$PYKERNEL_RUN_DIR/n" 2>/dev/null || echo 0); n=$((n+1)); '
                  f'echo $n > "$PYKERNEL_RUN_DIR/n"; {READY}; '
                  '[ $n -eq 1 ] && sleep 0.05; [ $n -eq 3 ] && sleep 0.3; exit 3')
        _, rec = run([sh(script, "phoenix", backoff_initial=0.05, backoff_max=0.2)])
        wait_for(lambda: len(rec.statuses("phoenix", ServiceState.BACKOFF)) >= 4)
        delays = [s.backoff for s in rec.statuses("phoenix", ServiceState.BACKOFF)[:4]]
        assert delays == [0.05, 0.1, 0.05, 0.1]

    def test_never_marks_failed(self, run) -> None:
        """restart=never leaves a failed service failed, with its exit code."""
        ex, _ = run([sh(f"{READY}; sleep 0.1; exit 5", "once", restart="never")])
        wait_for(lambda: ex.status().service("once").state is ServiceState.FAILED)
        status = ex.status().service("once")
        assert status.last_exit == 5 and status.reason == "exit code 5" and status.restarts == 0

    def test_on_failure_clean_exit_stays_stopped(self, run) -> None:
        """on-failure does not restart a service that exited 0."""
        ex, _ = run([sh(f"{READY}; sleep 0.1; exit 0", "done", restart="on-failure")])
        wait_for(lambda: ex.status().service("done").state is ServiceState.STOPPED)
        time.sleep(0.2)
        assert ex.status().service("done").starts == 1

    def test_always_restarts_clean_exit(self, run) -> None:
        """always restarts even a clean exit."""
        ex, _ = run([sh(f"{READY}; sleep 0.1; exit 0", "loop", restart="always",
                        backoff_initial=0.01, backoff_max=0.05)])
        wait_for(lambda: ex.status().service("loop").starts >= 3)

    def test_killed_service_is_restarted(self, run) -> None:
        """A service killed by a signal counts as failed and comes back with a new pid."""
        ex, rec = run([sh(f"{READY}; exec sleep 60", "victim", backoff_initial=0.01)])
        pid = ex.status().service("victim").pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: ex.status().service("victim").starts == 2
                 and ex.status().service("victim").state is ServiceState.RUNNING)
        (backoff,) = rec.statuses("victim", ServiceState.BACKOFF)
        assert backoff.reason.startswith("killed by SIGKILL") and backoff.last_exit == -9
        assert ex.status().service("victim").pid != pid

    def test_restart_not_ready_in_time_is_a_failure(self, run) -> None:
        """After boot, a restart that never gets ready is killed and retried."""
        script = (f'[ -e "$PYKERNEL_RUN_DIR/x" ] && exec sleep 60; touch "$PYKERNEL_RUN_DIR/x"; '
                  f"{READY}; sleep 0.1; exit 1")
        _, rec = run([sh(script, "slow", ready_timeout=0.2, backoff_initial=0.01)])
        wait_for(lambda: any("not ready within 0.2 s" in s.reason
                             for s in rec.statuses("slow", ServiceState.BACKOFF)))


class TestConfigError:
    """Exit 78 (EX_CONFIG) is a configuration error: retrying cannot fix it."""

    @pytest.mark.parametrize("policy", ["on-failure", "always"])
    def test_exit_78_is_not_restarted(self, run, policy: str) -> None:
        """A running service exiting 78 is failed with the reason, whatever the policy."""
        first = 'touch "$PYKERNEL_RUN_DIR/booted"; sleep 0.05'
        script = f'{READY}; [ -e "$PYKERNEL_RUN_DIR/booted" ] || {{ {first}; }}; exit 78'
        ex, rec = run([sh(script, "misconf", restart=policy, backoff_initial=0.01,
                          backoff_max=0.02)])
        wait_for(lambda: ex.status().service("misconf").state is ServiceState.FAILED)
        status = ex.status().service("misconf")
        assert status.last_exit == 78 and status.starts == 1
        assert status.reason == "exit code 78 (EX_CONFIG: configuration error, not restarted)"
        assert rec.statuses("misconf", ServiceState.BACKOFF) == []

    def test_exit_78_at_boot_names_the_configuration_error(self, run) -> None:
        """Exit 78 before ready fails the boot with a message saying why."""
        ex, _ = run([sh("echo 'no passphrase file' >&2; exit 78", "misconf",
                        restart="always")], start=False)
        with pytest.raises(BootError, match=r"'misconf' exited before it was ready \(exit code "
                                            r"78 \(EX_CONFIG: configuration error.*no passphrase"):
            ex.start()

    def test_should_restart_never_for_78(self) -> None:
        """The policy table: 78 is never restarted, other failures follow the policy."""
        assert not any(should_restart(p, EX_CONFIG) for p in RESTART_POLICIES)
        assert should_restart("always", 0) and should_restart("on-failure", 3)


class TestShutdown:
    """Shutdown: dependents first, grace then SIGKILL, whole process groups."""

    def test_reverse_dependency_order(self, run) -> None:
        """C (needs B, needs A) stops first; A gets SIGTERM only after B has exited."""
        a = sh(f"{READY}; exec sleep 60", "a")
        b = sh(f"{READY}; trap 'sleep 0.1; exit 0' TERM; sleep 60 & wait", "b", depends_on=("a",))
        c = sh(f"{READY}; trap 'sleep 0.1; exit 0' TERM; sleep 60 & wait", "c", depends_on=("b",))
        ex, rec = run([a, b, c])
        final = ex.shutdown()
        assert final.phase is ExecutorPhase.STOPPED
        assert rec.when("b", ServiceState.STOPPING) >= rec.when("c", ServiceState.STOPPED)
        assert rec.when("a", ServiceState.STOPPING) >= rec.when("b", ServiceState.STOPPED)
        assert {s.state for s in final.services} == {ServiceState.STOPPED}
        assert not any(s.killed for s in final.services)

    def test_sigkill_after_grace(self, run) -> None:
        """A service ignoring SIGTERM is killed after its grace period."""
        stubborn = sh(f"trap '' TERM; {READY}; while :; do sleep 0.05; done", "stubborn",
                      stop_grace=0.3)
        ex, _ = run([stubborn])
        t0 = time.monotonic()
        final = ex.shutdown()
        assert time.monotonic() - t0 >= 0.29
        status = final.service("stubborn")
        assert status.state is ServiceState.STOPPED
        assert status.reason == "did not stop within 0.3 s; killed"
        assert status.last_exit == -signal.SIGKILL and status.killed

    def test_process_group_is_stopped(self, run, tmp_path: Path) -> None:
        """Children a service spawned are stopped with it (its process group is signalled)."""
        pidfile = tmp_path / "child.pid"
        ex, _ = run([sh(f"sleep 60 & echo $! > {pidfile}; {READY}; wait", "parent")])
        child = int(pidfile.read_text())
        assert pid_alive(child)
        ex.shutdown()
        wait_for(lambda: not pid_alive(child), timeout=2)

    def test_shutdown_is_idempotent(self, run) -> None:
        """A second shutdown returns the same final state at once."""
        ex, _ = run([sh(f"{READY}; exec sleep 60", "a")])
        first = ex.shutdown()
        assert ex.shutdown().services == first.services

    def test_pending_and_backoff_services_end_stopped(self, run) -> None:
        """A service waiting for its restart is simply marked stopped at shutdown."""
        ex, _ = run([sh(f"{READY}; sleep 0.05; exit 1", "crashy", backoff_initial=30,
                        backoff_max=60)])
        wait_for(lambda: ex.status().service("crashy").state is ServiceState.BACKOFF)
        final = ex.shutdown()
        assert final.service("crashy").state is ServiceState.STOPPED
        assert final.service("crashy").reason == "restart cancelled by shutdown"


class TestLogsAndSignals:
    """Output lands in per-service logs; other signals are forwarded."""

    def test_stdout_and_stderr_in_log(self, run, tmp_path: Path) -> None:
        """Both streams of each start go to run_dir/<name>.log with executor markers."""
        ex, _ = run([sh(f"echo to-out; echo to-err >&2; {READY}; exec sleep 60", "talk")])
        ex.shutdown()
        text = (tmp_path / "run" / "talk.log").read_text()
        assert "to-out" in text and "to-err" in text
        assert "--- pykernel executor: start #1" in text
        assert "--- pykernel executor: killed by SIGTERM" in text

    def test_signal_all_forwards(self, run, tmp_path: Path) -> None:
        """signal_all delivers a signal to every live service."""
        mark = tmp_path / "got-usr1"
        ex, _ = run([sh(f"trap 'touch {mark}' USR1; {READY}; while :; do sleep 0.05; done",
                        "listener")])
        assert ex.signal_all(signal.SIGUSR1) == ["listener"]
        wait_for(mark.exists)


FORKED = '''
import json, os, sys

def server(ctx):
    import gc
    gc.collect()  # whatever the kernel left as garbage must not be finalized here
    info = {"pid": os.getpid(), "cwd": os.getcwd(), "server": os.environ.get("PYKERNEL_SERVER"),
            "argv": sys.argv, "fds": sorted(int(f) for f in os.listdir("/proc/self/fd")),
            "comm": open("/proc/self/comm").read().strip(), "sid": os.getsid(0)}
    print("hello from", ctx.server, flush=True)
    with open(os.path.join(ctx.run_dir, "forked.tmp"), "w") as f:
        json.dump(info, f)
    os.replace(os.path.join(ctx.run_dir, "forked.tmp"), os.path.join(ctx.run_dir, "forked.json"))
    while not ctx.stopping.wait(0.02):
        pass
    return int(os.environ.get("EXIT_WITH", "0"))
'''


class _Finalizer:
    """Appends ``label@pid`` to a file when finalized."""

    def __init__(self, path: Path, label: str) -> None:
        self.path, self.label = path, label

    def __del__(self) -> None:
        with open(self.path, "a") as f:
            f.write(f"{self.label}@{os.getpid()}\n")


def _holding(obj: object) -> Callable[..., object]:
    """A signal handler whose closure is the only holder of ``obj``."""
    return lambda *_: obj


class TestForkedPython:
    """fork_entry: Python servers started by forking the executor's process."""

    @pytest.fixture
    def module(self, tmp_path: Path) -> str:
        (tmp_path / "forked_mod.py").write_text(FORKED)
        return str(tmp_path)

    def spec(self, module: str, **kw: object) -> ServiceSpec:
        env = {"PYKERNEL_SYSTEM": "t", "PYKERNEL_SERVER": "fk", "PYTHONPATH": module}
        env.update(kw.pop("env", {}))  # type: ignore[arg-type]
        return ServiceSpec(name="fk", argv=("python", "-m", "pykernel.server",
                                            "forked_mod:server"),
                           fork_entry="forked_mod:server", env=env, cwd=module, **kw)  # type: ignore[arg-type]

    def test_runs_like_an_execd_server(self, run, module: str, tmp_path: Path) -> None:
        """The child: own session, the spec's env/cwd/argv, only fds 0-3, output in its log."""
        ex, _ = run([self.spec(module)])
        pid = ex.status().service("fk").pid
        wait_for(lambda: (tmp_path / "run" / "forked.json").exists())
        info = json.loads((tmp_path / "run" / "forked.json").read_text())
        assert info["pid"] == pid and info["sid"] == pid
        assert (info["server"], info["cwd"]) == ("fk", module)
        assert info["argv"] == ["python", "-m", "pykernel.server", "forked_mod:server"]
        assert info["comm"] == "pk:fk"
        assert info["fds"][:4] == [0, 1, 2, 3] and len(info["fds"]) <= 5  # + listdir's own
        final = ex.shutdown()
        assert final.service("fk").reason == "stopped (exit code 0)"
        assert "hello from fk" in (tmp_path / "run" / "fk.log").read_text()

    def test_inherited_objects_are_not_finalized(self, run, module: str,
                                                 tmp_path: Path) -> None:
        """Objects the kernel holds only through a signal handler, or that are garbage in a
        cycle, are never finalized in the child (which resets its signal handlers and runs
        gc.collect()): a __del__ there could act on the kernel's resources (buffers, shared
        memory) from the wrong process."""
        import gc

        log = tmp_path / "finalized"
        old_handler = signal.getsignal(signal.SIGUSR2)
        signal.signal(signal.SIGUSR2, _holding(_Finalizer(log, "handler")))
        gc.disable()
        try:
            cycle: list[object] = [_Finalizer(log, "cycle")]
            cycle.append(cycle)
            del cycle  # garbage, not yet collected
            ex, _ = run([self.spec(module)])
            wait_for(lambda: (tmp_path / "run" / "forked.json").exists())
            child = json.loads((tmp_path / "run" / "forked.json").read_text())["pid"]
            ex.shutdown()  # the child has collected, stopped and exited
            assert not log.exists(), log.read_text()
        finally:
            signal.signal(signal.SIGUSR2, old_handler)
            gc.enable()
            gc.collect()
        assert sorted(log.read_text().split()) == [f"cycle@{os.getpid()}",
                                                   f"handler@{os.getpid()}"]
        assert child != os.getpid()

    def test_exit_status_and_restart(self, run, module: str) -> None:
        """A forked server's exit status drives the restart policy like any other."""
        ex, rec = run([self.spec(module, env={"EXIT_WITH": "9"}, backoff_initial=0.01)])
        pid = ex.status().service("fk").pid
        assert pid is not None
        os.kill(pid, signal.SIGTERM)  # the server returns 9 once stopping
        wait_for(lambda: ex.status().service("fk").starts == 2)
        (backoff,) = rec.statuses("fk", ServiceState.BACKOFF)[:1]
        assert backoff.last_exit == 9

    def test_bad_entry_fails_boot(self, run, module: str) -> None:
        """An entry that cannot be imported fails the boot with the runtime's message."""
        spec = ServiceSpec(name="bad", argv=("python",), fork_entry="no_such_mod_pk:run",
                           env={"PYKERNEL_SYSTEM": "t", "PYKERNEL_SERVER": "bad"})
        ex, _ = run([spec], start=False)
        with pytest.raises(BootError, match=r"'bad' exited before it was ready "
                                            r"\(exit code 78 \(EX_CONFIG"
                                            r".*cannot import 'no_such_mod_pk'"):
            ex.start()

    def test_fork_entry_is_validated(self) -> None:
        """fork_entry must look like module:callable."""
        with pytest.raises(SpecError, match=r"fork_entry: expected 'module:callable'"):
            ServiceSpec(name="x", argv=("python",), fork_entry="not an entry")


class TestServiceControl:
    """stop_service / start_service / restart_service while the system runs."""

    def test_stop_then_start(self, run) -> None:
        """A stopped service stays down (no restart policy) until started again."""
        ex, _ = run([sh(f"{READY}; exec sleep 60", "svc", restart="always",
                        backoff_initial=0.01)])
        first = ex.status().service("svc").pid
        ex.stop_service("svc")
        wait_for(lambda: ex.status().service("svc").state is ServiceState.STOPPED)
        time.sleep(0.1)
        status = ex.status().service("svc")
        assert status.state is ServiceState.STOPPED and status.starts == 1
        assert first is not None and not pid_alive(first)
        ex.start_service("svc")
        wait_for(lambda: ex.status().service("svc").state is ServiceState.RUNNING)
        assert ex.status().service("svc").pid not in (None, first)

    def test_restart_gives_new_process(self, run) -> None:
        """restart_service stops the process and starts a fresh one."""
        ex, rec = run([sh(f"{READY}; exec sleep 60", "svc")])
        first = ex.status().service("svc").pid
        ex.restart_service("svc")
        wait_for(lambda: ex.status().service("svc").starts == 2
                 and ex.status().service("svc").state is ServiceState.RUNNING)
        assert ex.status().service("svc").pid != first
        assert [s for _, s in rec.states("svc")][-5:] == ["stopping", "stopped", "starting",
                                                         "ready", "running"]

    def test_start_running_service_is_refused(self, run) -> None:
        """Starting a service that runs is an error naming its state."""
        ex, _ = run([sh(f"{READY}; exec sleep 60", "svc")])
        with pytest.raises(ExecutorError, match=r"service 'svc' is running, not stopped"):
            ex.start_service("svc")

    def test_unknown_and_not_running(self, run) -> None:
        """Unknown names and an executor that is not running are refused by name."""
        ex, _ = run([sh(f"{READY}; exec sleep 60", "svc")])
        with pytest.raises(ExecutorError, match=r"cannot stop 'ghost': no such service"):
            ex.stop_service("ghost")
        ex.shutdown()
        with pytest.raises(ExecutorError, match=r"cannot restart 'svc': the executor is stopped"):
            ex.restart_service("svc")
