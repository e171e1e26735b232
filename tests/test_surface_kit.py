"""Shared parts of the state/surface/graph/HMI tests, and the tests of those parts.

- :func:`write_wiring` writes a small real wiring file (fan-out through a multiplexer, fan-in
  through a combiner, spare terminals to connect at run time); :func:`booted` plans it and
  brings its state machine to ``running`` the way the kernel does.
- :class:`PipeActions` is a real :class:`control.surface.KernelActions`: it creates and
  removes real shared-memory pipes and starts/stops real writer processes, reporting their
  moves to the state machine like the executor does.
- :func:`call` speaks HTTP to a running surface.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from control.plan import Plan, PlannedConnection, PlannedPipe, build_plan, connection_id
from control.state import SystemState
from control.state_flow import FlowSampler
from control.surface import KernelActions, Surface
from pykernel import PykernelError

PY = sys.executable


def write_wiring(directory: Path, system: str = "t") -> Path:
    """Write the test system's wiring file and return its path."""

    def server(name: str, cls: str, terminals: list[dict[str, Any]]) -> str:
        manifest = {"servername": name, "class_hex": cls, "owner": "test",
                    "terminals": terminals}
        return (f"  {name}:\n    command: [{json.dumps(PY)}, -c, pass]\n"
                f"    manifest: {json.dumps(manifest)}\n")

    text = f"system: {system}\nservers:\n"
    text += server("src", "0x10", [{"name": "out", "direction": "multiplexer",
                                      "message_size": 64}])
    for w in ("a", "b"):
        text += server(w, "0x11", [{"name": "inp", "direction": "input", "message_size": 64},
                                   {"name": "res", "direction": "output", "message_size": 64}])
    text += server("sink", "0x12", [{"name": "inp", "direction": "combiner",
                                     "message_size": 64}])
    text += server("spare", "0x13", [
        {"name": "out", "direction": "output", "message_size": 64},
        {"name": "big", "direction": "output", "message_size": 4096},
        {"name": "ints", "direction": "output", "message_size": 64, "dtype": "int32",
         "shape": [4]},
        {"name": "inp", "direction": "input", "message_size": 64, "required": False},
        {"name": "arr", "direction": "input", "message_size": 64, "dtype": "float32",
         "shape": [4], "required": False},
    ])
    text += textwrap.dedent("""\
        connections:
          - src.out -> a.inp
          - src.out -> b.inp
          - a.res -> sink.inp
          - b.res -> sink.inp
        """)
    path = directory / "system.yaml"
    path.write_text(text)
    return path


def booted(plan: Plan, pid: int | None = None) -> SystemState:
    """Return the plan's state machine moved to ``running`` as the kernel would."""
    state = SystemState.from_plan(plan)
    state.open_pipes()
    for name in plan.start_order:
        state.server_to(name, "starting", "executor: launched", pid=pid)
        state.server_to(name, "ready", "executor: terminals attached")
        state.server_to(name, "running", "executor: running")
    state.kernel_to("running", "kernel: boot complete")
    return state


def plan_of(directory: Path) -> Plan:
    """Plan the test system in ``directory``."""
    return build_plan(write_wiring(directory))


def call(method: str, url: str, body: Any = None, token: str | None = None,
         raw: bytes | None = None, headers: dict[str, str] | None = None,
         ) -> tuple[int, Any]:
    """Send one request; return ``(status, parsed JSON or text)`` (errors too)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None and raw is None:
        req.add_header("Content-Type", "application/json")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, payload, ctype = resp.status, resp.read(), resp.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        status, payload, ctype = exc.code, exc.read(), exc.headers["Content-Type"]
    if ctype and ctype.startswith("application/json"):
        return status, json.loads(payload)
    return status, payload.decode()


SERVER = textwrap.dedent("""\
    # A test server: one thread per terminal end; writers send every PERIOD s, readers drain.
    import sys, threading, time
    from pykernel import Pipe
    period = float(sys.argv[1])
    ends = [arg.rsplit(":", 1) for arg in sys.argv[2:]]
    def write(w):
        n = 0
        while True:
            try:
                w.send(n.to_bytes(8, "little") * 4, timeout=0.2)
                n += 1
            except Exception:
                pass
            time.sleep(period)
    def read(r):
        while True:
            try:
                r.recv(timeout=0.2)
            except Exception:
                pass
    pipes = [Pipe.open(name) for name, _ in ends]
    attached = [(p.writer(), write) if role == "writer" else (p.reader(), read)
                for p, (_, role) in zip(pipes, ends)]
    for end, loop in attached:
        threading.Thread(target=loop, args=(end,), daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()
    """)


class PipeActions(KernelActions):
    """A small real kernel for tests: real pipes, real server processes.

    A server is one process with a thread per terminal end: writers send a message every
    ``period`` seconds, readers drain. ``start``/``stop`` report moves to the state like the
    executor does.
    """

    def __init__(self, state: SystemState, plan: Plan, period: float = 0.002) -> None:
        self.state = state
        self.plan = plan
        self.period = period
        self.pipes: dict[str, Any] = {}
        self.procs: dict[str, list[subprocess.Popen[bytes]]] = {}
        self._lock = threading.Lock()
        from pykernel import Pipe

        self._pipe_cls = Pipe
        for p in plan.pipes:
            self._create(p)

    def _create(self, p: PlannedPipe, exist_ok: bool = True) -> None:
        self.pipes[p.name] = self._pipe_cls.create(
            p.name, slot_size=p.slot_size, slots=p.slots, shape=p.shape, lossy=p.lossy,
            max_readers=32, max_writers=32, mode=p.mode, exist_ok=exist_ok)

    def _ends(self, name: str) -> list[tuple[str, str]]:
        """The (pipe, role) pairs of server ``name`` in the live state."""
        out = []
        for c in self.state.connections_json():
            if c["source"].split(".")[0] == name:
                out.append((c["pipe"], "writer"))
            if c["target"].split(".")[0] == name:
                out.append((c["pipe"], "reader"))
        return sorted(set(out))

    def _launch(self, name: str) -> subprocess.Popen[bytes]:
        ends = [f"{pipe}:{role}" for pipe, role in self._ends(name)]
        proc = subprocess.Popen([PY, "-c", SERVER, str(self.period), *ends],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.procs[name] = [proc]
        self.state.server_to(name, "starting", "test kernel: launched", pid=proc.pid)
        return proc

    def _attached(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"ready":
            self._kill(name)
            self.state.server_to(name, "failed", "test kernel: did not attach")
            raise PykernelError(f"server {name} did not attach")
        self.state.server_to(name, "running", "test kernel: attached")

    def _spawn(self, name: str) -> None:
        self._attached(name, self._launch(name))

    def boot(self) -> PipeActions:
        """Start every server's process (all at once) and mark the kernel running."""
        self.state.open_pipes()
        procs = [(name, self._launch(name)) for name in self.plan.start_order]
        for name, proc in procs:
            self._attached(name, proc)
        self.state.kernel_to("running", "test kernel: booted")
        return self

    def _kill(self, name: str) -> None:
        for proc in self.procs.pop(name, []):
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)

    # KernelActions -------------------------------------------------------------------

    def connect(self, source: str, target: str) -> tuple[PlannedConnection, PlannedPipe]:
        """Create the pipe of a new plain connection (or reuse a fan pipe)."""
        src_terms = {t["id"]: t for t in self.state.terminals_json()}
        src, dst = src_terms[source], src_terms[target]
        if src["direction"] == "multiplexer" and src["pipe"]:
            name = src["pipe"]
        elif dst["direction"] == "combiner" and dst["pipe"]:
            name = dst["pipe"]
        else:
            owner = source if dst["direction"] != "combiner" else target
            name = f"{self.state.system}.{owner}"
        if name in self.pipes:
            geo = self.state.pipe_geometry(name)
            pipe = PlannedPipe(name, geo["shape"], geo["slot_size"], geo["slots"], geo["lossy"],
                               geo["mode"], geo["max_readers"] + 1, geo["max_writers"])
        else:
            shape = "combiner" if dst["direction"] == "combiner" else "one"
            pipe = PlannedPipe(name, shape, max(src["message_size"], dst["message_size"]), 64,
                               False, 0o600, 1, 1)
            self._create(pipe, exist_ok=False)  # a stranger's pipe by that name: refuse
        return PlannedConnection(connection_id(source, target), source, target, name), pipe

    def disconnect(self, connection_id: str) -> None:
        """Remove the pipe when this was its last connection."""
        conn = self.state.connection_json(connection_id)
        if len(self.state.connections_of_pipe(conn["pipe"])) == 1:
            self.pipes.pop(conn["pipe"]).close()
            self._pipe_cls.unlink(conn["pipe"])

    def start_server(self, name: str) -> None:
        """Launch the server's processes."""
        self._spawn(name)

    def stop_server(self, name: str) -> None:
        """Kill the server's processes and report it stopped."""
        self._kill(name)
        self.state.server_to(name, "stopped", "test kernel: stopped on request")

    def restart_server(self, name: str) -> None:
        """Stop (if up) and start again."""
        if self.procs.get(name):
            self.stop_server(name)
        self._spawn(name)

    def close(self) -> None:
        """Kill every process and unlink every pipe."""
        for name in list(self.procs):
            self._kill(name)
        for name, pipe in self.pipes.items():
            pipe.close()
            with contextlib.suppress(PykernelError):
                self._pipe_cls.unlink(name)
        self.pipes.clear()


@contextlib.contextmanager
def served_system(directory: Path, period: float = 0.002,
                  sample_every: float | None = None) -> Iterator[tuple[Surface, PipeActions]]:
    """Run the test system on real pipes and processes, served by a surface with its actions.

    Args:
        directory: where the wiring file and the run directory go.
        period: seconds between a writer's messages.
        sample_every: run a flow sampler at this interval (None: no sampler).
    """
    plan = plan_of(directory)
    actions = PipeActions(SystemState.from_plan(plan), plan, period=period)
    sampler = FlowSampler(actions.state, interval=sample_every) if sample_every else None
    surface = None
    try:
        actions.boot()
        if sampler is not None:
            sampler.start()
        surface = Surface(actions.state, actions, run_dir=directory / "run").start()
        yield surface, actions
    finally:
        if surface is not None:
            surface.stop()
        if sampler is not None:
            sampler.stop()
        actions.close()


class TestKit:
    """The shared test parts behave as the other tests assume."""

    def test_wiring_plans(self, tmp_path: Path) -> None:
        """The test system plans: 5 servers, 4 connections, a fan-out and a fan-in pipe."""
        plan = plan_of(tmp_path)
        assert [s.name for s in plan.servers] == ["a", "b", "sink", "spare", "src"]
        assert sorted(p.shape for p in plan.pipes) == ["combiner", "multiplexer"]
        assert len(plan.connections) == 4

    def test_booted_is_running(self, tmp_path: Path) -> None:
        """booted() leaves the kernel running and every connection open."""
        state = booted(plan_of(tmp_path))
        assert state.kernel_state == "running"
        assert {c["state"] for c in state.connections_json()} == {"open"}
