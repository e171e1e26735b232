"""Run-time rewiring on the real kernel: connect and disconnect restart the right servers."""

from __future__ import annotations

import json
import os
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control.errors import WiringError
from control.kernel import Kernel, KernelError
from control.kernel_rewire import SPARE_PLACES, capacity, steps
from control.plan import build_plan, connection_id
from control.state_export import wiring_of
from control.state_kernel import _FollowedPipe
from pykernel import Pipe
from pykernel._supervise import ServiceState

SERVERS = '''
import json, os, struct
from control.manifest import manifest, terminal

MSG = struct.Struct("<Q8s")


def tag(seq):
    return b"tick%04d" % (seq % 10000)


@manifest(servername="ticker", class_hex="0x31", owner="test",
          terminals=[terminal("out", "multiplexer", message_size=16)])
def ticker(ctx):
    _count(ctx)


@manifest(servername="gen", class_hex="0x33", owner="test",
          terminals=[terminal("out", "output", message_size=16)])
def gen(ctx):
    _count(ctx)


def _count(ctx):
    """Send numbered, tagged messages (about 500/s) until stopped."""
    from pykernel import PipeTimeout
    if not ctx.connected("out"):
        ctx.stopping.wait()
        return
    out = ctx.terminal("out")
    seq = 0
    while not ctx.stopping.is_set():
        try:
            out.send(MSG.pack(seq, tag(seq)), timeout=0.2)
        except PipeTimeout:
            continue
        seq += 1
        ctx.stopping.wait(0.002)


def _report(ctx, data):
    path = os.path.join(ctx.run_dir, ctx.server + ".json")
    with open(path + ".tmp", "w") as f:
        json.dump(dict(data, pid=os.getpid()), f)
    os.replace(path + ".tmp", path)


@manifest(servername="listener", class_hex="0x32", owner="test",
          terminals=[terminal("inp", "input", message_size=16, required=False)])
def listener(ctx):
    """Check every message: its tag matches its sequence number, no gap, no repeat."""
    seen = {"count": 0, "bad": 0, "first": None, "last": None}
    _report(ctx, seen)
    if not ctx.connected("inp"):
        ctx.stopping.wait()
        return
    for msg in ctx.messages("inp"):
        seq, got = MSG.unpack(msg)
        if got != tag(seq) or (seen["last"] is not None and seq != seen["last"] + 1):
            seen["bad"] += 1
        if seen["first"] is None:
            seen["first"] = seq
        seen["last"] = seq
        seen["count"] += 1
        if seen["count"] % 25 == 0:
            _report(ctx, seen)
    _report(ctx, seen)
'''

WIRING = """\
system: {system}
python_path: ["."]
defaults: {{restart: on-failure, backoff: {{initial: 0.1, max: 1.0}}}}
servers:
  ticker: {{python: "rw_servers:ticker"}}
  gen: {{python: "rw_servers:gen"}}
  l1: {{python: "rw_servers:listener"}}
  l2: {{python: "rw_servers:listener"}}
  l3: {{python: "rw_servers:listener"}}
  picky:                     # a configuration error (exit 78) once its input is connected
    command: [bash, -c, 'case "$PYKERNEL_TERMINALS" in *inp*) exit 78;; esac;
              echo READY=1 >&$PYKERNEL_NOTIFY_FD; exec sleep 600']
    manifest:
      servername: picky
      class_hex: "0x34"
      owner: test
      terminals: [{{name: inp, direction: input, message_size: 16, required: false}}]
connections:
  - ticker.out -> l1.inp
"""


def shm_names(system: str) -> list[str]:
    """The system's shared-memory pipes left in /dev/shm."""
    return sorted(n for n in os.listdir("/dev/shm") if n.startswith(f"pykernel.{system}."))


def wait_for(cond: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Poll ``cond`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def report(run: Path, server: str, pid: int | None = None) -> dict[str, Any] | None:
    """Read a listener's report (None if absent, or written by another process)."""
    try:
        data = json.loads((run / f"{server}.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data if pid is None or data["pid"] == pid else None


def write_system(tmp: Path, system: str) -> Path:
    """Write the servers module and the wiring file; return the wiring's path."""
    (tmp / "rw_servers.py").write_text(SERVERS)
    path = tmp / "wiring.yaml"
    path.write_text(textwrap.dedent(WIRING.format(system=system)))
    return path


@pytest.fixture
def system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh system name; its pipes are removed even if the test fails."""
    monkeypatch.syspath_prepend(str(tmp_path))  # lint imports the entries
    name = f"rw{uuid.uuid4().hex[:10]}"
    yield name
    for leftover in shm_names(name):
        os.unlink(f"/dev/shm/{leftover}")


@pytest.fixture
def kernel(tmp_path: Path, system: str, request: pytest.FixtureRequest) -> Iterator[Kernel]:
    """The system running under a kernel (forked servers, or exec'd ones with param False)."""
    plan = build_plan(write_system(tmp_path, system))
    k = Kernel(plan, run_dir=tmp_path / "run", builtins=(),
               fork_python=getattr(request, "param", True), ready_timeout=10, stop_grace=2)
    k.start()
    try:
        yield k
    finally:
        k.stop()
    assert shm_names(system) == []


def pid_of(kernel: Kernel, name: str) -> int | None:
    """The server's pid while it runs."""
    return kernel.status().service(name).pid


def flowing(run: Path, server: str, pid: int | None, at_least: int = 50) -> dict[str, Any]:
    """Wait until ``server`` (process ``pid``) has checked ``at_least`` messages."""
    return wait_for(lambda: (r := report(run, server, pid)) and r["count"] >= at_least and r)


class TestPlanDiff:
    """What a new plan changes: pipes to make, reuse or drop, servers to restart."""

    def test_fan_pipes_have_spare_places(self, tmp_path: Path, system: str) -> None:
        """A multiplexer pipe gets spare reader places; the plan itself is unchanged."""
        plan = build_plan(write_system(tmp_path, system))
        (mux,) = plan.pipes
        assert (mux.shape, mux.max_readers) == ("multiplexer", 1)
        assert capacity(mux) == (1 + SPARE_PLACES, 1)

    def test_connect_to_a_multiplexer_restarts_only_the_new_reader(
            self, tmp_path: Path, system: str) -> None:
        """ticker.out -> l2.inp reuses the pipe: nothing to create, only l2 restarts."""
        from control.state import SystemState
        from control.state_export import plan_connect

        old = build_plan(write_system(tmp_path, system))
        new, conn, pipe = plan_connect(SystemState.from_plan(old), "ticker.out", "l2.inp")
        assert conn.id == connection_id("ticker.out", "l2.inp") and pipe.max_readers == 2

        class Handle:  # the geometry the kernel created the pipe with
            slot_size, slots, shape, lossy = pipe.slot_size, pipe.slots, pipe.shape, pipe.lossy
            max_readers, max_writers = capacity(old.pipes[0])

        todo = steps(old, new, {pipe.name: Handle()})
        assert (todo.added, todo.replaced, todo.removed, todo.restart) == ((), (), (), ("l2",))
        Handle.max_readers = 1  # no free place: the pipe is recreated, all its users restart
        todo = steps(old, new, {pipe.name: Handle()})
        assert todo.replaced == (pipe,) and set(todo.restart) == {"ticker", "l1", "l2"}


EDGES = [("ticker.out", "l2.inp"), ("ticker.out", "l3.inp"), ("gen.out", "l2.inp"),
         ("gen.out", "l3.inp"), ("gen.out", "picky.inp"), ("ticker.out", "picky.inp")]


class TestPlanProperties:
    """For any sequence of connects and disconnects, the plans stay coherent."""

    @settings(max_examples=25, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(ops=st.lists(st.sampled_from(EDGES), max_size=8))
    def test_rewires_touch_only_their_ends_and_undo_exactly(
            self, tmp_path: Path, system: str, ops: list[tuple[str, str]]) -> None:
        """Each step restarts only the servers at its ends; undoing all gives the same bytes."""
        from control.state import SystemState
        from control.state_export import check_new_connection, plan_connect, plan_disconnect

        first = plan = build_plan(write_system(tmp_path, system))
        made: list[str] = []
        for source, target in ops:
            shadow = SystemState.from_plan(plan)
            cid = connection_id(source, target)
            if cid in {c.id for c in plan.connections}:
                new = plan_disconnect(shadow, cid)
                made.remove(cid)
            elif check_new_connection(shadow, source, target):
                continue  # lint refuses it (two writers into a plain input)
            else:
                new = plan_connect(shadow, source, target)[0]
                made.append(cid)
            handles = {p.name: _created(p) for p in plan.pipes}
            todo = steps(plan, new, handles)
            ends = {source.split(".")[0], target.split(".")[0]}
            assert set(todo.restart) <= ends and not todo.replaced
            assert build_plan(wiring_of(SystemState.from_plan(new))) == new
            plan = new
        for cid in list(made):
            plan = plan_disconnect(SystemState.from_plan(plan), cid)
        assert plan.to_json() == first.to_json()


def _created(pipe: Any) -> Any:
    """A stand-in for the pipe handle the kernel creates for planned ``pipe``."""
    readers, writers = capacity(pipe)
    return SimpleNamespace(slot_size=pipe.slot_size, slots=pipe.slots, shape=pipe.shape,
                           lossy=pipe.lossy, max_readers=readers, max_writers=writers)


class TestConnect:
    """Connect at run time: the pipe, the restarts, and the messages that then flow."""

    def test_new_reader_on_the_multiplexer_gets_every_message(self, kernel: Kernel) -> None:
        """l2 joins the ticker's pipe: it restarts and checks a gapless, correct stream."""
        run = kernel.run_dir
        ticker, l1 = pid_of(kernel, "ticker"), pid_of(kernel, "l1")
        old_l2 = pid_of(kernel, "l2")
        conn, pipe = kernel.connect("ticker.out", "l2.inp")
        assert (conn.source, conn.target, conn.pipe) == ("ticker.out", "l2.inp", pipe.name)
        assert pid_of(kernel, "ticker") == ticker and pid_of(kernel, "l1") == l1
        l2 = pid_of(kernel, "l2")
        assert l2 != old_l2 and kernel.status().service("l2").state is ServiceState.RUNNING
        got = flowing(run, "l2", l2)
        assert got["bad"] == 0 and got["last"] - got["first"] + 1 == got["count"]
        assert kernel.plan.connections[-1].id == conn.id or conn in kernel.plan.connections
        assert json.loads(kernel.executor.spec("l2").env["PYKERNEL_TERMINALS"])["inp"][
            "pipe"] == pipe.name
        assert kernel.executor.spec("ticker").env["PYKERNEL_CONNECTOME"] == \
            kernel.plan.connectome_id

    @pytest.mark.parametrize("kernel", [True, False], indirect=True, ids=["fork", "exec"])
    def test_one_to_one_creates_and_disconnect_removes_the_pipe(self, kernel: Kernel) -> None:
        """gen.out -> l3.inp makes a new pipe and restarts both ends; disconnect undoes it."""
        system = kernel.plan.system
        before = shm_names(system)
        gen, l3 = pid_of(kernel, "gen"), pid_of(kernel, "l3")
        conn, pipe = kernel.connect("gen.out", "l3.inp")
        assert pipe.name == f"{system}.gen.out" and pipe.shape == "one"
        assert shm_names(system) == sorted([*before, f"pykernel.{pipe.name}"])
        assert pid_of(kernel, "gen") != gen and pid_of(kernel, "l3") != l3
        got = flowing(kernel.run_dir, "l3", pid_of(kernel, "l3"))
        assert got["bad"] == 0
        version = kernel.plan.connectome_id
        kernel.disconnect(conn.id)
        assert shm_names(system) == before
        assert conn not in kernel.plan.connections and kernel.plan.connectome_id != version
        assert "out" not in json.loads(kernel.executor.spec("gen").env["PYKERNEL_TERMINALS"])
        assert kernel.status().service("l3").state is ServiceState.RUNNING

    def test_disconnect_one_reader_keeps_the_others(self, kernel: Kernel) -> None:
        """Removing l2 from the multiplexer leaves the pipe and l1's stream alone."""
        conn, _ = kernel.connect("ticker.out", "l2.inp")
        l1 = pid_of(kernel, "l1")
        names = shm_names(kernel.plan.system)
        kernel.disconnect(conn.id)
        assert shm_names(kernel.plan.system) == names and pid_of(kernel, "l1") == l1
        got = flowing(kernel.run_dir, "l1", l1, at_least=report(kernel.run_dir, "l1")["count"]
                      + 25)
        assert got["bad"] == 0


class TestRecreate:
    """A fan pipe with no free place left is recreated: every user restarts on the new one."""

    def test_full_multiplexer_is_recreated(self, tmp_path: Path, system: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
        """No spare places: ticker, l1 and l2 restart; both readers get a gapless stream."""
        monkeypatch.setattr("control.kernel_rewire.SPARE_PLACES", 0)
        plan = build_plan(write_system(tmp_path, system))
        with Kernel(plan, run_dir=tmp_path / "run", builtins=(), fork_python=True,
                    ready_timeout=5, stop_grace=2) as kernel:
            name = f"{system}.ticker.out"
            generation = kernel.pipe_generation(name)
            followed, stale = _FollowedPipe(kernel, name), Pipe.open(name)
            before = {n: pid_of(kernel, n) for n in ("ticker", "l1", "l2", "gen")}
            kernel.connect("ticker.out", "l2.inp")
            after = {n: pid_of(kernel, n) for n in before}
            assert [n for n in before if before[n] != after[n]] == ["ticker", "l1", "l2"]
            assert kernel.pipe_generation(name) == generation + 1
            with Pipe.open(name) as pipe:
                assert pipe.max_readers == 2
            for reader in ("l1", "l2"):
                got = flowing(kernel.run_dir, reader, after[reader])
                assert got["bad"] == 0 and got["last"] - got["first"] + 1 == got["count"]
            # the flow sampler's mapping follows the new pipe; a plain old mapping is frozen
            frozen, first = stale.stats().written, followed.stats().written
            wait_for(lambda: followed.stats().written > first + 10)
            assert stale.stats().written == frozen
            followed.close()
            stale.close()
        assert shm_names(system) == []


class TestRefusals:
    """A refused or failed rewire changes nothing."""

    def test_lint_refusals(self, kernel: Kernel) -> None:
        """Duplicates and unknown ends are lint errors; unknown IDs name the ID."""
        plan = kernel.plan
        with pytest.raises(WiringError, match="already connected"):
            kernel.connect("ticker.out", "l1.inp")
        with pytest.raises(WiringError, match="nope"):
            kernel.connect("ticker.out", "nope.inp")
        with pytest.raises(KernelError, match=r"has no connection 'c-123'"):
            kernel.disconnect("c-123")
        assert kernel.plan is plan

    @settings(max_examples=40, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(source=st.one_of(st.text(max_size=30), st.sampled_from(
               ["ticker.out", "gen.out", "l1.inp", "ticker.", ".out", "ticker.out.x"])),
           target=st.one_of(st.text(max_size=30), st.sampled_from(
               ["l1.inp", "l2.inp", "l2.out", "l3.inp", "gen.out", "nope.inp"])))
    def test_bad_ends_are_typed_errors_and_change_nothing(self, kernel: Kernel, source: str,
                                                          target: str) -> None:
        """Any text as an end: lint's WiringError before anything moves, or a real connect."""
        plan, pids = kernel.plan, {s.name: s.pid for s in kernel.status().services}
        try:
            conn, _ = kernel.connect(source, target)
        except WiringError:
            assert kernel.plan is plan
            assert {s.name: s.pid for s in kernel.status().services} == pids
        else:  # a legal edge between known terminals: undo it for the next example
            assert (conn.source, conn.target) == (source, target)
            kernel.disconnect(conn.id)

    def test_server_failing_on_its_new_terminals_rolls_back(self, kernel: Kernel) -> None:
        """picky exits 78 once connected: not restarted, the rewire is undone and named."""
        plan, names = kernel.plan, shm_names(kernel.plan.system)
        with pytest.raises(KernelError, match=r"cannot connect ticker.out -> picky.inp: "
                                              r"picky failed: exit code 78 \(EX_CONFIG"):
            kernel.connect("ticker.out", "picky.inp")
        assert kernel.plan is plan and shm_names(plan.system) == names
        assert "inp" not in json.loads(kernel.executor.spec("picky").env["PYKERNEL_TERMINALS"])
        assert kernel.status().service("picky").state is ServiceState.RUNNING

    def test_pipe_in_the_way_changes_nothing(self, kernel: Kernel) -> None:
        """A stranger holds the new pipe's name: PipeSetupError-based refusal, no restarts."""
        system = kernel.plan.system
        pids = {s.name: s.pid for s in kernel.status().services}
        with Pipe.create(f"{system}.gen.out", slot_size=16, slots=4) as stranger, \
                stranger.writer():
            try:
                with pytest.raises(KernelError, match=rf"pipe '{system}.gen.out' exists and "
                                                      "is in use"):
                    kernel.connect("gen.out", "l3.inp")
            finally:
                Pipe.unlink(stranger.name)
        assert {s.name: s.pid for s in kernel.status().services} == pids

    def test_not_running(self, tmp_path: Path, system: str) -> None:
        """Before start, a connect is refused naming the kernel's phase."""
        k = Kernel(build_plan(write_system(tmp_path, system)), run_dir=tmp_path / "run",
                   builtins=())
        with pytest.raises(KernelError, match=r"cannot connect ticker.out -> l2.inp: .* idle"):
            k.connect("ticker.out", "l2.inp")
