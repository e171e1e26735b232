"""The kernel: plan → pipes → executor → running, and a teardown that leaves nothing."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from control.errors import WiringError
from control.kernel import (
    Kernel,
    KernelBusyError,
    KernelError,
    PipeSetupError,
    default_run_dir,
    services_from_plan,
)
from control.plan import build_plan
from pykernel._supervise import BootError, ServiceState

SERVERS = '''
import json, os
from control.manifest import manifest, terminal
from pykernel.server import ready_when_told

@manifest(servername="ping", class_hex="0x1", owner="test",
          terminals=[terminal("out", "output", message_size=64)])
def ping(ctx):
    out = ctx.terminal("out")
    for n in range(int(os.environ.get("PINGS", "50"))):
        out.send(b"ping %d" % n, timeout=5)
    while not ctx.stopping.wait(0.05):
        pass

@manifest(servername="pong", class_hex="0x2", owner="test",
          terminals=[terminal("in", "input", message_size=64)])
def pong(ctx):
    got = [m.decode() for m in ctx.messages("in")]
    with open(os.path.join(ctx.run_dir, "pong.json"), "w") as f:
        json.dump(got, f)

@manifest(servername="pong", class_hex="0x2", owner="test",
          terminals=[terminal("in", "input", message_size=64)])
def broken(ctx):
    raise RuntimeError("broken on purpose")

@ready_when_told
@manifest(servername="pong", class_hex="0x2", owner="test",
          terminals=[terminal("in", "input", message_size=64)])
def misconfigured(ctx):
    print("no passphrase file", flush=True)
    return 78
'''


def wiring(tmp_path: Path, system: str, pong: str = "pong") -> Path:
    """Write a two-server wiring (ping -> pong) and its servers module into tmp_path."""
    (tmp_path / "kt_servers.py").write_text(SERVERS)
    path = tmp_path / "wiring.yaml"
    path.write_text(textwrap.dedent(f"""\
        system: {system}
        python_path: ["."]
        defaults: {{restart: never}}
        servers:
          pong:
            python: kt_servers:{pong}
          ping:
            python: kt_servers:ping
            depends_on: [pong]
        connections:
          - ping.out -> pong.in
        """))
    return path


def shm_names(system: str) -> list[str]:
    return sorted(n for n in os.listdir("/dev/shm") if n.startswith(f"pykernel.{system}."))


@pytest.fixture
def system() -> Iterator[str]:
    """A system name no other test uses; its pipes are removed even if the test fails."""
    name = f"kt{uuid.uuid4().hex[:10]}"
    yield name
    for leftover in shm_names(name):
        os.unlink(f"/dev/shm/{leftover}")


@pytest.fixture(autouse=True)
def _import_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # lint imports python entries to read their manifests
    monkeypatch.syspath_prepend(str(tmp_path))


class TestServicesFromPlan:
    """Planned servers become executor specs without losing anything."""

    def test_python_and_order(self, tmp_path: Path, system: str) -> None:
        """Python servers run under pykernel.server with the plan's env, in start order."""
        plan = build_plan(wiring(tmp_path, system))
        specs = services_from_plan(plan, python="/py", ready_timeout=3, stop_grace=1)
        assert [s.name for s in specs] == ["pong", "ping"]
        ping = specs[1]
        assert ping.argv == ("/py", "-m", "pykernel.server", "kt_servers:ping")
        assert ping.depends_on == ("pong",)
        assert ping.env["PYKERNEL_SERVER"] == "ping"
        assert ping.env["PYKERNEL_SYSTEM"] == system
        assert json.loads(ping.env["PYKERNEL_TERMINALS"])["out"]["role"] == "writer"
        assert ping.env["PYTHONUNBUFFERED"] == "1"
        assert ping.fork_entry is None
        forked = services_from_plan(plan, fork_python=True)[1]
        assert forked.fork_entry == "kt_servers:ping" and forked.argv[-1] == "kt_servers:ping"
        assert (ping.ready_timeout, ping.stop_grace, ping.restart) == (3, 1, "never")
        assert ping.cwd == str(tmp_path)

    def test_default_run_dir_is_per_system(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The default run directory sits under XDG_RUNTIME_DIR, one per system."""
        monkeypatch.setenv("XDG_RUNTIME_DIR", "/xdg")
        assert default_run_dir("demo") == Path("/xdg/pykernel/demo")


class TestKernelLifecycle:
    """start() creates the pipes and boots; stop() removes every pipe."""

    @pytest.mark.parametrize("fork_python", [False, True], ids=["exec", "fork"])
    def test_runs_and_tears_down(self, tmp_path: Path, system: str, fork_python: bool) -> None:
        """Pipes exist (owner-only) while up, messages flow, and nothing is left after stop."""
        plan = build_plan(wiring(tmp_path, system))
        kernel = Kernel(plan, run_dir=tmp_path / "run", builtins=(), fork_python=fork_python)
        status = kernel.start()
        try:
            assert {s.name: s.state for s in status.services} == {
                "pong": ServiceState.RUNNING, "ping": ServiceState.RUNNING}
            (pipe,) = plan.pipes
            assert shm_names(system) == [f"pykernel.{pipe.name}"]
            assert os.stat(f"/dev/shm/pykernel.{pipe.name}").st_mode & 0o777 == 0o600
            assert kernel.pipe_names == (pipe.name,)
        finally:
            final = kernel.stop()
        assert shm_names(system) == []
        assert all(s.state is ServiceState.STOPPED for s in final.services)
        got = json.loads((tmp_path / "run" / "pong.json").read_text())
        assert got == [f"ping {n}" for n in range(50)]
        pids = [s.pid for s in status.services]
        assert all(not Path(f"/proc/{pid}").exists() for pid in pids)

    def test_context_manager(self, tmp_path: Path, system: str) -> None:
        """`with Kernel(plan):` runs the system inside the block only."""
        plan = build_plan(wiring(tmp_path, system))
        with Kernel(plan, run_dir=tmp_path / "run", builtins=()) as kernel:
            assert kernel.status().phase.value == "running"
            assert shm_names(system)
        assert shm_names(system) == []

    def test_second_kernel_same_system_is_refused(self, tmp_path: Path, system: str) -> None:
        """A second kernel for a running system fails with its pid, the first keeps running."""
        plan = build_plan(wiring(tmp_path, system))
        with Kernel(plan, run_dir=tmp_path / "run", builtins=()) as first:
            second = Kernel(plan, run_dir=tmp_path / "run", builtins=())
            busy = rf"system '{system}' is already up \(kernel pid {os.getpid()}"
            with pytest.raises(KernelBusyError, match=busy):
                second.start()
            assert first.status().phase.value == "running"
            assert shm_names(system)

    def test_boot_failure_leaves_nothing(self, tmp_path: Path, system: str) -> None:
        """A server that dies at boot: BootError naming it and its log; pipes removed."""
        plan = build_plan(wiring(tmp_path, system, pong="broken"))
        kernel = Kernel(plan, run_dir=tmp_path / "run", builtins=())
        with pytest.raises(BootError, match=r"'pong' exited .*RuntimeError: broken on purpose"):
            kernel.start()
        assert shm_names(system) == []
        # the lock was released: a fixed system can start in the same run directory
        fixed = build_plan(wiring(tmp_path, system))
        with Kernel(fixed, run_dir=tmp_path / "run", builtins=()):
            pass

    def test_pipe_in_use_is_refused(self, tmp_path: Path, system: str) -> None:
        """A live pipe of the same name (another kernel elsewhere) is not clobbered."""
        from pykernel import Pipe

        plan = build_plan(wiring(tmp_path, system))
        (planned,) = plan.pipes
        with Pipe.create(planned.name, slot_size=64, slots=8):
            kernel = Kernel(plan, run_dir=tmp_path / "run", builtins=())
            with pytest.raises(PipeSetupError, match=rf"pipe '{planned.name}' exists and is in"):
                kernel.start()
            assert shm_names(system) == [f"pykernel.{planned.name}"]
            Pipe.unlink(planned.name)

    def test_unusable_run_dir_is_named(self, tmp_path: Path, system: str) -> None:
        """A run directory that cannot be created is a KernelError naming it; no pipes made."""
        (tmp_path / "file").write_text("")
        plan = build_plan(wiring(tmp_path, system))
        kernel = Kernel(plan, run_dir=tmp_path / "file" / "run", builtins=())
        with pytest.raises(KernelError, match=r"run directory .*file/run: Not a directory"):
            kernel.start()
        assert shm_names(system) == []

    def test_failed_pipe_setup_removes_the_pipes_made(self, tmp_path: Path) -> None:
        """If the second pipe cannot be created, the first one is removed again."""
        from test_demo import demo_copy, segments_of

        from pykernel import Pipe

        wiring_file, demo_system = demo_copy(tmp_path)
        plan = build_plan(wiring_file)
        first, second = (p.name for p in plan.pipes)  # created in this order
        try:
            with Pipe.create(second, slot_size=64, slots=8):
                with pytest.raises(PipeSetupError, match=rf"pipe '{second}' exists"):
                    Kernel(plan, run_dir=tmp_path / "run", builtins=()).start()
                assert segments_of(demo_system) == [f"pykernel.{second}"]
        finally:
            for name in segments_of(demo_system):
                os.unlink(f"/dev/shm/{name}")
        assert first != second

    def test_stale_pipe_is_replaced(self, tmp_path: Path, system: str) -> None:
        """A pipe left by a dead kernel is removed and created afresh."""
        import subprocess

        plan = build_plan(wiring(tmp_path, system))
        (planned,) = plan.pipes
        subprocess.run([sys.executable, "-c",
                        "import sys; from pykernel import Pipe; "
                        "Pipe.create(sys.argv[1], slot_size=64, slots=8)", planned.name],
                       check=True)
        assert shm_names(system)
        with Kernel(plan, run_dir=tmp_path / "run", builtins=()) as kernel:
            assert kernel.status().phase.value == "running"
        assert shm_names(system) == []

    def test_builtin_housekeeping_runs_first(self, tmp_path: Path, system: str) -> None:
        """Housekeeping is up first, removed this system's stale pipes only, and beats."""
        import subprocess

        other = f"other{uuid.uuid4().hex[:8]}.x"
        subprocess.run([sys.executable, "-c",
                        "import sys; from pykernel import Pipe\n"
                        "for n in sys.argv[1:]: Pipe.create(n, slot_size=64, slots=8)",
                        f"{system}.old.pipe", other], check=True)
        plan = build_plan(wiring(tmp_path, system))
        run_dir = tmp_path / "run"
        try:
            with Kernel(plan, run_dir=run_dir) as kernel:
                names = [s.name for s in kernel.status().services]
                assert names[0] == "pykernel.housekeeping"
                assert not Path(f"/dev/shm/pykernel.{system}.old.pipe").exists()
                assert Path(f"/dev/shm/pykernel.{other}").exists()
                deadline = time.monotonic() + 5
                while not (run_dir / "heartbeat.json").exists():
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
                beat = json.loads((run_dir / "heartbeat.json").read_text())
                assert beat["pid"] == kernel.status().service("pykernel.housekeeping").pid
        finally:
            Path(f"/dev/shm/pykernel.{other}").unlink(missing_ok=True)
        assert shm_names(system) == []


class TestKernelActions:
    """The kernel carries out the control surface's server actions."""

    def test_server_actions(self, tmp_path: Path, system: str) -> None:
        """stop/start/restart a planned server; unknown names and bad connects are refused."""
        from control.surface import KernelActions

        plan = build_plan(wiring(tmp_path, system))
        with Kernel(plan, run_dir=tmp_path / "run", builtins=(), fork_python=True) as kernel:
            assert isinstance(kernel, KernelActions)
            pid = kernel.status().service("ping").pid
            kernel.restart_server("ping")
            deadline = time.monotonic() + 10
            while not (kernel.status().service("ping").starts == 2
                       and kernel.status().service("ping").state is ServiceState.RUNNING):
                assert time.monotonic() < deadline
                time.sleep(0.02)
            assert kernel.status().service("ping").pid != pid
            with pytest.raises(KernelError, match=rf"system '{system}' has no server 'nope'"):
                kernel.stop_server("nope")
            with pytest.raises(WiringError, match=r"already connected"):
                kernel.connect("ping.out", "pong.in")  # rewiring: tests/test_rewire.py
            with pytest.raises(KernelError, match=r"has no connection 'c-123'"):
                kernel.disconnect("c-123")
