"""The executor as PID 1 of a fresh PID namespace: reaps orphans, stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import require_root, require_tool

REPO = Path(__file__).resolve().parent.parent

# Runs as PID 1: an executor with a service that leaves an orphan behind and one that
# ignores SIGTERM. It reports through JSON files in the run directory.
DRIVER = r"""
import json, os, signal, sys, threading
from pykernel._executor import Executor
from pykernel._supervise import ServiceSpec

run_dir = sys.argv[1]
ready = "echo READY=1 >&$PYKERNEL_NOTIFY_FD"
specs = [
    ServiceSpec(name="orphaner", argv=("bash", "-c", f"(sleep 0.2 &); {ready}; exec sleep 60")),
    ServiceSpec(name="stubborn", argv=("bash", "-c",
                f"trap '' TERM; {ready}; while :; do sleep 0.05; done"),
                stop_grace=0.3, depends_on=("orphaner",)),
]
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
ex = Executor(specs, run_dir=run_dir, builtins=())
ex.start()

def write(name, data):
    with open(os.path.join(run_dir, name + ".tmp"), "w") as f:
        json.dump(data, f)
    os.replace(os.path.join(run_dir, name + ".tmp"), os.path.join(run_dir, name))

while not stop.wait(0.05):
    write("live.json", {"pid": os.getpid(), "orphans": ex.status().orphans_reaped})
final = ex.shutdown()
others = sorted(int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid())
write("final.json", {"status": final.to_dict(), "others": others})
"""


def children_of(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def state_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


def wait_file(path: Path, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.02)
    return json.loads(path.read_text())


class TestPid1:
    """In `unshare --pid --fork --mount-proc`, the executor is PID 1."""

    def test_reaps_orphans_and_stops_on_sigterm(self, tmp_path: Path) -> None:
        """Orphans are reaped (no zombies); SIGTERM stops every service and nothing is left."""
        require_root()
        unshare = require_tool("unshare")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path[1:]])}
        proc = subprocess.Popen([unshare, "--pid", "--fork", "--mount-proc", sys.executable,
                                 "-c", DRIVER, str(tmp_path)], env=env, cwd=REPO,
                                stderr=subprocess.PIPE, text=True)
        try:
            live = wait_file(tmp_path / "live.json")
            assert live["pid"] == 1
            deadline = time.monotonic() + 5
            while json.loads((tmp_path / "live.json").read_text())["orphans"] < 1:
                assert time.monotonic() < deadline, "the orphan was never reaped"
                time.sleep(0.05)
            (init,) = children_of(proc.pid)
            zombies = [c for c in children_of(init) if state_of(c) == "Z"]
            assert zombies == []
            os.kill(init, signal.SIGTERM)
            _, err = proc.communicate(timeout=10)
            assert proc.returncode == 0, err
            final = wait_file(tmp_path / "final.json")
            states = {s["name"]: (s["state"], s["reason"]) for s in final["status"]["services"]}
            assert states == {"orphaner": ("stopped", "stopped (killed by SIGTERM)"),
                              "stubborn": ("stopped", "did not stop within 0.3 s; killed")}
            assert final["others"] == []  # every process in the namespace was gone before exit
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
