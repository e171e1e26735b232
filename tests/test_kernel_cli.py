"""`pykernel up`: exit codes that say what failed, quiet when piped, live status on a TTY."""

from __future__ import annotations

import json
import os
import pty
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_demo import processes_of
from test_kernel import wiring

PYKERNEL = [sys.executable, "-m", "pykernel"]


@pytest.fixture
def system() -> Iterator[str]:
    """A system name of its own; its processes and pipes are removed even on failure."""
    name = f"kc{uuid.uuid4().hex[:10]}"
    yield name
    for pid in processes_of(name):
        os.kill(pid, signal.SIGKILL)
    for leftover in os.listdir("/dev/shm"):
        if leftover.startswith(f"pykernel.{name}."):
            os.unlink(f"/dev/shm/{leftover}")


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen]]:
    made: list[subprocess.Popen] = []
    yield made
    for proc in made:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)


def up(tmp_path: Path, wiring_file: Path, *args: str, **kw: object) -> subprocess.Popen:
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen([*PYKERNEL, "up", str(wiring_file), "--run-dir",
                             str(tmp_path / "run"), *args], text=True, **kw)


def wait_running(proc: subprocess.Popen) -> dict:
    assert proc.stdout is not None
    for line in proc.stdout:
        event = json.loads(line)
        if event["event"] == "up":
            return event
    pytest.fail(f"never came up: {proc.communicate()[1]}")


class TestExitCodes:
    """Each kind of failure has its own exit status and one line on stderr."""

    def test_lint_error_exits_1_with_location(self, tmp_path: Path, system: str) -> None:
        """A wiring file with errors never starts anything: exit 1, file:line:column."""
        bad = wiring(tmp_path, system)
        bad.write_text(bad.read_text().replace("{restart: never}", "{restart: maybe}"))
        result = subprocess.run([*PYKERNEL, "up", str(bad), "--run-dir", str(tmp_path / "r")],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 1
        assert result.stderr.startswith(f"pykernel: {bad}:3:")
        assert "restart" in result.stderr and "maybe" in result.stderr
        assert len(result.stderr.splitlines()) == 1
        assert not (tmp_path / "r").exists()

    @pytest.mark.parametrize(("entry", "says"), [
        ("broken", ["exited", "RuntimeError: broken on purpose"]),
        # 78 (EX_CONFIG): a configuration error, named as such and never retried
        ("misconfigured", ["exited before it was ready (exit code 78 (EX_CONFIG: "
                           "configuration error, not restarted))", "no passphrase file"]),
    ])
    def test_boot_failure_exits_4(self, tmp_path: Path, system: str, entry: str,
                                  says: list[str]) -> None:
        """A server dying at boot: exit 4, its name and last log line; no pipes left."""
        result = subprocess.run(
            [*PYKERNEL, "up", str(wiring(tmp_path, system, pong=entry)),
             "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, timeout=60)
        assert result.returncode == 4, result.stderr
        assert "boot failed: service 'pong'" in result.stderr
        assert all(text in result.stderr for text in says), result.stderr
        assert (tmp_path / "run" / "pong.log").read_text().count("exit code") == 1
        assert not [n for n in os.listdir("/dev/shm") if n.startswith(f"pykernel.{system}.")]

    def test_second_up_exits_7(self, tmp_path: Path, system: str, procs: list) -> None:
        """The same system twice from one run directory: the second exits 7."""
        first = up(tmp_path, wiring(tmp_path, system), "--json-status")
        procs.append(first)
        wait_running(first)
        second = subprocess.run([*PYKERNEL, "up", str(tmp_path / "wiring.yaml"), "--run-dir",
                                 str(tmp_path / "run")], capture_output=True, text=True,
                                timeout=30)
        assert second.returncode == 7
        assert f"system '{system}' is already up (kernel pid {first.pid}" in second.stderr
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)
        assert first.returncode == 0

    def test_surface_port_taken_exits_1(self, tmp_path: Path, system: str) -> None:
        """A control surface that cannot listen is one clear line, and nothing starts."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            result = subprocess.run(
                [*PYKERNEL, "up", str(wiring(tmp_path, system)), "--run-dir",
                 str(tmp_path / "run"), "--surface", f"127.0.0.1:{port}"],
                capture_output=True, text=True, timeout=30)
        assert result.returncode == 1
        assert f"control surface cannot listen on 127.0.0.1:{port}" in result.stderr
        assert not (tmp_path / "run" / "pong.log").exists()

    @pytest.mark.parametrize("value", ["0", "-1", "inf", "soon"])
    def test_bad_grace_exits_2(self, tmp_path: Path, value: str) -> None:
        """A grace period that is not a positive number is a usage error."""
        result = subprocess.run([*PYKERNEL, "up", "x.yaml", "--grace", value],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 2
        assert "--grace" in result.stderr and value in result.stderr

    def test_server_failure_while_running_exits_6(self, tmp_path: Path, system: str,
                                                  procs: list) -> None:
        """A server that fails for good while the system runs makes the final exit 6."""
        proc = up(tmp_path, wiring(tmp_path, system), "--json-status")
        procs.append(proc)
        event = wait_running(proc)
        pong = next(s for s in event["services"] if s["name"] == "pong")
        os.kill(pong["pid"], signal.SIGKILL)  # restart: never
        assert proc.stdout is not None
        for line in proc.stdout:
            change = json.loads(line)
            if change.get("name") == "pong" and change.get("state") == "failed":
                assert change["reason"] == "killed by SIGKILL"
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 6, err


class TestOutput:
    """Quiet when piped; a live status line on a terminal."""

    def test_quiet_when_piped(self, tmp_path: Path, system: str, procs: list) -> None:
        """Without --json-status and without a TTY, a clean run prints nothing (exec mode)."""
        proc = up(tmp_path, wiring(tmp_path, system), "--no-fork")
        procs.append(proc)
        deadline = time.monotonic() + 30
        while not (tmp_path / "run" / "ping.log").exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert (proc.returncode, out, err) == (0, "", "")

    def test_live_status_on_tty(self, tmp_path: Path, system: str, procs: list) -> None:
        """On a terminal: an 'up' line, a self-updating status line, a 'stopped' line."""
        leader, follower = pty.openpty()
        proc = up(tmp_path, wiring(tmp_path, system), stderr=follower)
        procs.append(proc)
        os.close(follower)
        seen = b""
        deadline = time.monotonic() + 30
        try:
            while b"2/2 running" not in seen:
                assert time.monotonic() < deadline, seen
                seen += os.read(leader, 4096)
            proc.send_signal(signal.SIGINT)
            while True:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # EIO: the other side closed
                    break
                if not chunk:
                    break
                seen += chunk
            proc.wait(timeout=30)
        finally:
            os.close(leader)
        text = seen.decode()
        assert f"{system}: up, 2 servers, 1 pipes" in text
        assert "\r" in text  # the status line rewrites itself
        assert f"{system}: stopped" in text
        assert proc.returncode == 0


class TestKernelCrash:
    """A SIGKILLed kernel leaves no server running, and the system can come up again."""

    @pytest.mark.parametrize("mode", [[], ["--no-fork"]], ids=["fork", "exec"])
    def test_servers_die_with_the_kernel(self, tmp_path: Path, system: str, procs: list,
                                         mode: list[str]) -> None:
        """Servers get SIGTERM when their kernel dies; the next up replaces stale pipes."""
        proc = up(tmp_path, wiring(tmp_path, system), "--json-status", "--no-surface", *mode)
        procs.append(proc)
        event = wait_running(proc)
        pids = [s["pid"] for s in event["services"]]
        assert len(pids) == 3 and sorted(processes_of(system, pids)) == sorted(pids)
        proc.kill()
        proc.communicate(timeout=30)
        deadline = time.monotonic() + 10
        while processes_of(system, pids):
            assert time.monotonic() < deadline, processes_of(system, pids)
            time.sleep(0.05)
        again = up(tmp_path, wiring(tmp_path, system), "--json-status", "--no-surface", *mode)
        procs.append(again)
        wait_running(again)
        again.send_signal(signal.SIGTERM)
        again.communicate(timeout=30)
        assert again.returncode == 0


def slow_wiring(tmp_path: Path, system: str, delay: float) -> Path:
    """One command server that takes ``delay`` seconds to say READY=1."""
    path = tmp_path / "slow.yaml"
    path.write_text(
        f"system: {system}\n"
        "servers:\n"
        "  slow:\n"
        f"    command: [bash, -c, 'sleep {delay}; echo READY=1 >&$PYKERNEL_NOTIFY_FD; "
        "exec sleep 60']\n"
        "    manifest:\n"
        "      {servername: slow, class_hex: '0x9', owner: test,\n"
        "       terminals: [{name: out, direction: output, message_size: 64}]}\n")
    return path


class TestBootInterrupted:
    """Boot that does not finish: a readiness timeout, or a signal while booting."""

    def test_ready_timeout_exits_4(self, tmp_path: Path, system: str) -> None:
        """--ready-timeout turns a slow server into exit 4 naming it."""
        result = subprocess.run(
            [*PYKERNEL, "up", str(slow_wiring(tmp_path, system, 30)), "--run-dir",
             str(tmp_path / "run"), "--ready-timeout", "0.5", "--no-surface"],
            capture_output=True, text=True, timeout=60)
        assert result.returncode == 4
        assert "service 'slow' was not ready within 0.5 s" in result.stderr

    def test_sigint_during_boot_exits_130(self, tmp_path: Path, system: str,
                                          procs: list) -> None:
        """Ctrl-C while a server is still starting stops everything: exit 130."""
        proc = up(tmp_path, slow_wiring(tmp_path, system, 30), "--json-status",
                  "--no-surface")
        procs.append(proc)
        assert proc.stdout is not None
        for line in proc.stdout:
            event = json.loads(line)
            if event.get("name") == "slow" and event["state"] == "starting":
                break
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
        assert proc.returncode == 130
        states = [json.loads(x)["state"] for x in rest.splitlines()
                  if json.loads(x).get("name") == "slow"]
        assert states[-1] == "stopped"
        assert not Path(f"/proc/{event['pid']}").exists()


class TestStubbornServer:
    """A server that outlives its grace period is killed, and the exit says so."""

    def test_killed_at_shutdown_exits_6(self, tmp_path: Path, system: str,
                                        procs: list) -> None:
        """SIGTERM ignored: SIGKILL after --grace, a line on stderr, exit 6."""
        path = tmp_path / "stubborn.yaml"
        path.write_text(
            f"system: {system}\n"
            "servers:\n"
            "  stubborn:\n"
            "    command: [bash, -c, \"trap '' TERM; echo READY=1 >&$PYKERNEL_NOTIFY_FD; "
            "while :; do sleep 0.05; done\"]\n"
            "    manifest:\n"
            "      {servername: stubborn, class_hex: '0x9', owner: test,\n"
            "       terminals: [{name: out, direction: output, message_size: 64}]}\n")
        proc = up(tmp_path, path, "--grace", "0.3", "--no-surface", "--json-status")
        procs.append(proc)
        wait_running(proc)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 6
        final = json.loads(out.splitlines()[-1])
        assert final["event"] == "stopped" and final["exit_code"] == 6
        (stubborn,) = [s for s in final["services"] if s["name"] == "stubborn"]
        assert stubborn["killed"] and stubborn["reason"] == "did not stop within 0.3 s; killed"


class TestForwarding:
    """SIGHUP, SIGUSR1 and SIGUSR2 sent to the kernel reach every server."""

    def test_sigusr1_reaches_server(self, tmp_path: Path, system: str, procs: list) -> None:
        """A server trapping SIGUSR1 sees the one sent to `pykernel up`."""
        mark = tmp_path / "usr1"
        path = tmp_path / "trap.yaml"
        path.write_text(
            f"system: {system}\n"
            "servers:\n"
            "  trap:\n"
            f"    command: [bash, -c, \"trap 'touch {mark}' USR1; "
            "echo READY=1 >&$PYKERNEL_NOTIFY_FD; while :; do sleep 0.05; done\"]\n"
            "    manifest:\n"
            "      {servername: trap, class_hex: '0x9', owner: test,\n"
            "       terminals: [{name: out, direction: output, message_size: 64}]}\n")
        proc = up(tmp_path, path, "--json-status", "--no-surface")
        procs.append(proc)
        wait_running(proc)
        proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while not mark.exists():
            assert time.monotonic() < deadline, "SIGUSR1 was not forwarded"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        assert proc.returncode == 0
