"""Process-level helpers of the executor: the built-in list, spawning, signalling, logs.

:func:`spawn` starts one service as the executor wants it: its own session, stdin from
``/dev/null``, stdout and stderr appended to its log after a marker line, the environment
it was given plus ``PYKERNEL_RUN_DIR``, ``PYKERNEL_KERNEL_PID`` (servers ask to die with
it) and, when it notifies, ``PYKERNEL_NOTIFY_FD``: the write end of a fresh notify pipe.
Python servers with a ``fork_entry`` are forked from this process instead
(:mod:`pykernel._supervise_fork`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from pykernel._supervise import KERNEL_PID_ENV, NOTIFY_ENV, RUN_DIR_ENV, ServiceSpec, SpecError
from pykernel._supervise_fork import ForkedProcess, fork_python_server

Process = subprocess.Popen[bytes] | ForkedProcess
LOG_MARK = "--- pykernel executor:"


def builtin_services(python: str | None = None, heartbeat: float = 1.0,
                     clean_prefix: str = "") -> tuple[ServiceSpec, ...]:
    """Return the built-in services, started before any other (the list is explicit).

    - ``pykernel.housekeeping``: writes a heartbeat file in the run directory and removes
      stale pipes (segments whose processes are all gone) at start and periodically.

    Args:
        python: the interpreter to run them with (default: this one).
        heartbeat: seconds between heartbeats.
        clean_prefix: remove only stale pipes whose names start with this ("": all).

    """
    exe = python or sys.executable
    return (
        ServiceSpec(
            name="pykernel.housekeeping",
            argv=(exe, "-m", "pykernel._supervise_builtins", "housekeeping",
                  "--interval", repr(float(heartbeat)), "--prefix", clean_prefix),
            restart="always",
            backoff_initial=0.5,
            backoff_max=10.0,
            ready_timeout=15.0,
            stop_grace=2.0,
        ),
    )


def spawn(spec: ServiceSpec, *, start_no: int, log_path: Path,
          run_dir: Path) -> tuple[Process, int | None]:
    """Start one process for ``spec``.

    Returns:
        The process and the non-blocking read end of its notify pipe (None when the spec
        does not notify).

    Raises:
        OSError: it could not be started (``filename`` names what was missing).

    """
    env = dict(os.environ)
    env.update(spec.env)
    env[RUN_DIR_ENV] = str(run_dir)
    env[KERNEL_PID_ENV] = str(os.getpid())
    read_fd = write_fd = -1
    if spec.notify:
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(read_fd, False)
        env[NOTIFY_ENV] = str(write_fd)
    else:
        env.pop(NOTIFY_ENV, None)
    try:
        with open(log_path, "ab", buffering=0) as logf:
            logf.write(f"{LOG_MARK} start #{start_no} at {time.strftime('%Y-%m-%dT%H:%M:%S%z')}"
                       f": {' '.join(spec.argv)}\n".encode())
            proc: Process
            if spec.fork_entry:
                proc = fork_python_server(spec.fork_entry, spec.argv, env, spec.cwd,
                                          logf.fileno(), write_fd if spec.notify else None)
            else:
                proc = subprocess.Popen(
                    spec.argv, stdin=subprocess.DEVNULL, stdout=logf,
                    stderr=subprocess.STDOUT, env=env, cwd=spec.cwd,
                    pass_fds=(write_fd,) if spec.notify else (), start_new_session=True,
                )
    except BaseException:
        if read_fd >= 0:
            os.close(read_fd)
        raise
    finally:
        if write_fd >= 0:
            os.close(write_fd)
    return proc, (read_fd if spec.notify else None)


def log_line(log_path: Path, text: str) -> None:
    """Append an executor marker line to a service's log (best effort)."""
    try:
        with open(log_path, "ab") as logf:
            logf.write(f"{LOG_MARK} {text}\n".encode())
    except OSError:
        pass


def killpg(pid: int, signum: int) -> bool:
    """Signal a service's process group (it leads its own session); False if gone."""
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        try:  # the leader may have left its group: signal it alone
            os.kill(pid, signum)
        except ProcessLookupError:
            return False
    except PermissionError:
        return False
    return True


def log_tail(path: Path, limit: int = 2048) -> str:
    """Return the end of a service's log without the executor's marker lines."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    return "\n".join(x for x in lines if not x.startswith(LOG_MARK))


def check_acyclic(depends_on: Mapping[str, tuple[str, ...]]) -> None:
    """Raise SpecError naming a dependency cycle, if ``depends_on`` has one."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        path.append(name)
        for dep in depends_on[name]:
            if state.get(dep) == 1:
                cycle = [*path[path.index(dep):], dep]
                raise SpecError(name, "depends_on", "dependency cycle " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, path)
        path.pop()
        state[name] = 2

    for name in depends_on:
        if name not in state:
            visit(name, [])
