"""End to end: `pykernel up` runs the demo; every message is verified; SIGINT leaves nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from conftest import require_root, require_tool

REPO = Path(__file__).resolve().parent.parent
PYKERNEL = [sys.executable, "-m", "pykernel"]


def demo_copy(tmp_path: Path) -> tuple[Path, str]:
    """examples/demo.yaml under a system name of its own (tests may run side by side)."""
    system = f"demo{uuid.uuid4().hex[:8]}"
    text = (REPO / "examples" / "demo.yaml").read_text()
    assert "system: demo\n" in text and 'python_path: [".."]' in text
    text = text.replace("system: demo\n", f"system: {system}\n")
    text = text.replace('python_path: [".."]', f"python_path: [{json.dumps(str(REPO))}]")
    path = tmp_path / "demo.yaml"
    path.write_text(text)
    return path, system


def processes_of(system: str, sessions: Iterable[int] = ()) -> list[int]:
    """Pids of live processes of this system: environment names it (exec'd servers) or
    in one of the given sessions (each server leads its own; forked servers keep the
    kernel's original environment block in /proc)."""
    needle = f"PYKERNEL_SYSTEM={system}\0".encode()
    wanted = {int(s) for s in sessions if s}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, session = fields[0], int(fields[3])
        if state != "Z" and (needle in environ or session in wanted):
            found.append(int(entry))
    return found


def segments_of(system: str) -> list[str]:
    return [n for n in os.listdir("/dev/shm") if n.startswith(f"pykernel.{system}.")]


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


@pytest.fixture
def up(tmp_path: Path) -> Iterator:
    """Start `pykernel up` processes; kill and clean whatever is left at the end."""
    started: list[tuple[subprocess.Popen[str], str]] = []

    def start(wiring: Path, system: str, *args: str, env: dict[str, str] | None = None,
              prefix: list[str] | None = None, **kw: object) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [*(prefix or []), *PYKERNEL, "up", str(wiring), "--run-dir", str(tmp_path / "run"),
             *args],
            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, **kw)
        started.append((proc, system))
        return proc

    yield start
    for proc, system in started:
        if proc.poll() is None:
            proc.kill()
        for pid in processes_of(system):
            os.kill(pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        for name in segments_of(system):
            os.unlink(f"/dev/shm/{name}")


class TestDemo:
    """The demo system under `pykernel up`, from boot to a clean SIGINT."""

    def test_every_message_verified_and_nothing_left(self, up, tmp_path: Path) -> None:
        """source → 2 workers → sink: 2 x N results verified in order; SIGINT exits 0, clean."""
        frames = 2000
        wiring, system = demo_copy(tmp_path)
        proc = up(wiring, system, "--json-status",
                  env={"DEMO_FRAMES": str(frames), "DEMO_RATE": "0"})
        assert proc.stdout is not None
        events = []
        for line in proc.stdout:
            events.append(json.loads(line))
            if events[-1]["event"] == "up":
                break
        else:
            pytest.fail(f"never came up: {proc.communicate()[1]}")
        up_event = events[-1]
        assert up_event["system"] == system and up_event["phase"] == "running"
        names = [s["name"] for s in up_event["services"]]
        assert names == ["pykernel.housekeeping", "sink", "worker_a", "worker_b", "source"]
        assert sorted(segments_of(system)) == [f"pykernel.{system}.sink.results",
                                               f"pykernel.{system}.source.frames"]
        pids = [s["pid"] for s in up_event["services"]]
        # the control surface serves the same system, live
        with urllib.request.urlopen(up_event["surface"] + "/api/servers", timeout=10) as resp:
            servers = {s["name"]: s for s in json.load(resp)}
        for status in up_event["services"][1:]:
            assert servers[status["name"]]["state"] == "running"
            assert servers[status["name"]]["pid"] == status["pid"]

        report_path = tmp_path / "run" / "sink-report.json"
        deadline = time.monotonic() + 30
        while read_json(report_path).get("verified", 0) < 2 * frames:
            assert time.monotonic() < deadline, read_json(report_path)
            assert proc.poll() is None
            time.sleep(0.05)

        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        lines = [json.loads(x) for x in rest.splitlines()]
        assert lines[-1]["event"] == "stopped" and lines[-1]["exit_code"] == 0
        # reverse order: the source stops before the workers, the workers before the sink
        stopped = [e["name"] for e in lines if e["event"] == "service" and e["state"] == "stopped"]
        assert stopped == ["source", "worker_a", "worker_b", "sink", "pykernel.housekeeping"] or \
            stopped == ["source", "worker_b", "worker_a", "sink", "pykernel.housekeeping"]

        report = read_json(report_path)
        assert report["final"] is True
        assert (report["received"], report["verified"], report["errors"]) == (2 * frames,
                                                                              2 * frames, 0)
        for worker in ("worker_a", "worker_b"):
            assert report["workers"][worker] == {"received": frames, "next_seq": frames,
                                                 "gaps": 0, "repeats": 0, "bad": 0}
        assert read_json(tmp_path / "run" / "source-report.json")["sent"] == frames
        assert "sink: received 4000, verified 4000, errors 0" in (
            tmp_path / "run" / "sink.log").read_text()

        assert segments_of(system) == []
        assert processes_of(system, pids) == []
        assert all(not Path(f"/proc/{pid}").exists() for pid in pids)


class TestDemoAsPid1:
    """`pykernel up` as PID 1 of a fresh PID namespace (a bare host or a container)."""

    def test_runs_and_stops_on_sigterm(self, up, tmp_path: Path) -> None:
        """The demo runs with the kernel as PID 1; SIGTERM stops it cleanly, all verified."""
        require_root()
        unshare = require_tool("unshare")
        frames = 1000
        wiring, system = demo_copy(tmp_path)
        proc = up(wiring, system, "--json-status", "--no-surface",
                  env={"DEMO_FRAMES": str(frames), "DEMO_RATE": "0"},
                  prefix=[unshare, "--pid", "--fork", "--kill-child", "--mount-proc"])
        assert proc.stdout is not None
        for line in proc.stdout:
            event = json.loads(line)
            if event["event"] == "up":
                break
        else:
            pytest.fail(f"never came up: {proc.communicate()[1]}")
        report_path = tmp_path / "run" / "sink-report.json"
        deadline = time.monotonic() + 30
        while read_json(report_path).get("verified", 0) < 2 * frames:
            assert time.monotonic() < deadline, read_json(report_path)
            time.sleep(0.05)
        (kernel,) = [int(c) for t in Path(f"/proc/{proc.pid}/task").iterdir()
                     for c in (t / "children").read_text().split()]
        nspid = next(x for x in Path(f"/proc/{kernel}/status").read_text().splitlines()
                     if x.startswith("NSpid:"))
        assert nspid.split()[1:] == [str(kernel), "1"]  # the kernel is PID 1 in there
        os.kill(kernel, signal.SIGTERM)
        rest, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert json.loads(rest.splitlines()[-1])["exit_code"] == 0
        report = read_json(report_path)
        assert (report["final"], report["verified"], report["errors"]) == (True, 2 * frames, 0)
        assert segments_of(system) == []
        assert processes_of(system) == []
