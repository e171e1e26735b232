"""pykernel.liveness: one answer to "is this process alive?" for every layer."""

from __future__ import annotations

import os
import subprocess
import sys

from pykernel.liveness import pid_alive, process_start


class TestLiveness:
    def test_self_is_alive_with_a_start_time(self) -> None:
        """This process is alive and its start time is stable."""
        assert pid_alive(os.getpid())
        assert process_start(os.getpid()) == process_start(os.getpid()) is not None

    def test_exited_and_zombie_are_gone(self) -> None:
        """A child that exited but is not reaped (a zombie) counts as gone, then too once reaped."""
        child = subprocess.Popen([sys.executable, "-c", "pass"])
        try:
            os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped
            assert not pid_alive(child.pid)
            assert process_start(child.pid) is None
        finally:
            child.wait()
        assert not pid_alive(child.pid)

    def test_nonsense_is_not_alive(self) -> None:
        """Values that cannot be pids are simply not alive."""
        for value in (0, -1, None, "1", 1.0, True):
            assert not pid_alive(value)
