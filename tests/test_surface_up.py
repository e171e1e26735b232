"""`pykernel up` with its control surface, driven by the real `pykernel` verbs over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from test_surface_kit import call

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo.yaml"


def _pykernel(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pykernel", *args], capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """`pykernel up` running the demo (under its own system name) until the module ends."""
    tmp = tmp_path_factory.mktemp("up")
    wiring = yaml.safe_load(DEMO.read_text())
    wiring["system"] = f"demo-up-{os.getpid()}"
    wiring["python_path"] = [str(DEMO.parent.parent)]
    (tmp / "demo.yaml").write_text(yaml.safe_dump(wiring))
    run = tmp / "run"
    proc = subprocess.Popen([sys.executable, "-m", "pykernel", "up", str(tmp / "demo.yaml"),
                             "--run-dir", str(run)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            if (run / "surface.json").exists() and _running(run):
                break
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "pykernel up did not come up"
            time.sleep(0.1)
        yield proc, run
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _running(run: Path) -> bool:
    done = _pykernel("status", "--run-dir", str(run), "--json")
    return done.returncode == 0 and json.loads(done.stdout)["system"]["state"] == "running"


class TestUp:
    """The verbs against a kernel started by `pykernel up`."""

    def test_status_events_graph(self, up) -> None:  # type: ignore[no-untyped-def]
        """status, events and graph find the kernel by its run directory."""
        _, run = up
        status = json.loads(_pykernel("status", "--run-dir", str(run), "--json").stdout)
        assert {s["name"]: s["state"] for s in status["servers"]} == {
            "sink": "running", "source": "running", "worker_a": "running",
            "worker_b": "running"}
        events = json.loads(_pykernel("events", "--run-dir", str(run), "--json").stdout)
        assert any(e["kind"] == "kernel" and e["to"] == "running" for e in events)
        graph = _pykernel("graph", "--format", "mermaid", "--run-dir", str(run))
        assert graph.returncode == 0 and "fan-out" in graph.stdout and "fan-in" in graph.stdout

    def test_connect_refused_in_one_line(self, up) -> None:  # type: ignore[no-untyped-def]
        """An existing edge: exit 1 and one line saying so."""
        _, run = up
        done = _pykernel("connect", "worker_a.results", "sink.results", "--run-dir", str(run))
        assert done.returncode == 1
        assert done.stderr.count("\n") == 1 and "already connected" in done.stderr

    def test_stop_and_start_over_http(self, up) -> None:  # type: ignore[no-untyped-def]
        """With the run directory's token an operator stops and starts a worker."""
        _, run = up
        url = json.loads((run / "surface.json").read_text())["url"]
        token = (run / "surface.token").read_text().strip()
        assert call("POST", url + "/api/servers/worker_b/stop", token=token)[0] == 202
        _wait(lambda: call("GET", url + "/api/servers/worker_b")[1]["state"] == "stopped")
        assert call("POST", url + "/api/servers/worker_b/start", token=token)[0] == 202
        _wait(lambda: call("GET", url + "/api/servers/worker_b")[1]["state"] == "running")

    def test_interrupt_removes_the_surface_files(self, up) -> None:  # type: ignore[no-untyped-def]
        """SIGINT: up exits, surface.json and the token are gone (runs last)."""
        proc, run = up
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert not (run / "surface.json").exists()
        assert not (run / "surface.token").exists()


def _wait(cond, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)
