r"""Start a Python server by forking the executor's process instead of exec'ing Python.

A fresh interpreter pays for its start-up and imports (pykernel, numpy, the manifests)
every time: ~0.1-0.4 s of CPU per server. The kernel has already imported all of that
(lint imports every python entry to read its manifest), so a forked child starts the
server function in milliseconds. The child is set up like an exec'd one: its own session,
stdin from /dev/null, stdout/stderr into its log, the notify pipe on fd 3, every other
descriptor closed, the service's environment, working directory and ``PYTHONPATH``, and
default signal dispositions; then it runs ``pykernel.server.main([entry])`` and
``_exit``\ s with its status, so no parent state (atexit hooks, buffers, finalizers) runs
twice.

The usual caveats of ``fork`` in a threaded process apply. Only the forking thread exists
in the child, so the child must not need locks other threads held: it touches only its own
new objects, and CPython resets the GIL, the import lock and ``threading`` after a fork
(glibc resets malloc). And the child must not finalize what it inherited: a pipe end's
``__del__`` would detach the *kernel's* reader from shared memory, a buffered file would
write its buffer twice. So the parent's other threads' frames and its signal handlers are
kept referenced in the child, the collector is frozen (``gc.freeze``), and the child leaves
by ``os._exit``: nothing inherited is ever freed there.
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import signal
import sys
from collections.abc import Mapping

from pykernel._supervise import NOTIFY_ENV, die_with_kernel

__all__ = ["ForkedProcess", "fork_python_server"]

_NOTIFY_CHILD_FD = 3
_RESET_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1,
                  signal.SIGUSR2, signal.SIGCHLD, signal.SIGALRM)


class ForkedProcess:
    """The executor's handle on a forked server (the parts of ``Popen`` it uses).

    Attributes:
        pid: the child's process id.
        returncode: set by the executor once it reaped the child.

    """

    def __init__(self, pid: int, args: tuple[str, ...]) -> None:
        self.pid = pid
        self.args = args
        self.returncode: int | None = None


def fork_python_server(entry: str, argv: tuple[str, ...], env: Mapping[str, str],
                       cwd: str | None, log_fd: int, notify_fd: int | None) -> ForkedProcess:
    """Fork; the child runs the server ``entry`` (``module:callable``) and exits.

    Args:
        entry: the server function, ``module:callable``.
        argv: what the child shows as ``sys.argv`` (the equivalent exec command line).
        env: the child's whole environment.
        cwd: its working directory (None: unchanged).
        log_fd: where its stdout and stderr go.
        notify_fd: the write end of its notify pipe, or None.

    Returns:
        The handle on the child.

    Raises:
        OSError: the fork failed.

    """
    _warm_up()
    sys.stdout.flush()
    sys.stderr.flush()
    # What the child must never finalize: objects only other threads' stacks (deleted in
    # the child by the fork) or the signal handlers (reset below) keep alive. Held here,
    # they stay alive until the child's _exit; gc.freeze() keeps the collector off them.
    inherited = (sys._current_frames(), {s: signal.getsignal(s) for s in _RESET_SIGNALS})
    pid = os.fork()
    if pid:
        del inherited
        return ForkedProcess(pid, argv)
    gc.freeze()
    status = 127
    try:
        status = _child(entry, argv, env, cwd, log_fd, notify_fd)
    except BaseException as exc:  # the child must never return into the parent's code
        with contextlib.suppress(OSError):
            os.write(2, f"pykernel: forked server {entry} failed: {exc!r}\n".encode())
    finally:
        os._exit(status)


def _warm_up() -> None:
    """Import in the parent, once, what every child needs (else each child pays for it)."""
    import ctypes
    import importlib

    importlib.import_module("pykernel.server")
    ctypes.CDLL(None)  # die_with_kernel's libc handle


def _child(entry: str, argv: tuple[str, ...], env: Mapping[str, str], cwd: str | None,
           log_fd: int, notify_fd: int | None) -> int:
    os.setsid()
    die_with_kernel(env)  # as server.run() does for exec'd servers; the fork set it up
    name = env.get("PYKERNEL_SERVER") or entry.rpartition(":")[2]
    with contextlib.suppress(OSError), open("/proc/self/comm", "w") as comm:
        comm.write(f"pk:{name}"[:15])  # what ps/top show, instead of the kernel's name
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    child_env = dict(env)
    if notify_fd is not None:
        os.dup2(notify_fd, _NOTIFY_CHILD_FD)
        child_env[NOTIFY_ENV] = str(_NOTIFY_CHILD_FD)
        first_closed = _NOTIFY_CHILD_FD + 1
    else:
        child_env.pop(NOTIFY_ENV, None)
        first_closed = 3
    os.closerange(first_closed, os.sysconf("SC_OPEN_MAX"))
    signal.set_wakeup_fd(-1)
    for signum in _RESET_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.environ.clear()
    os.environ.update(child_env)
    if cwd:
        os.chdir(cwd)
    extra = [p for p in child_env.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:0] = [p for p in extra if p not in sys.path]
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True,
                                  write_through=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True,
                                  write_through=True, errors="backslashreplace")
    sys.argv = list(argv)
    from pykernel.server import main

    try:
        return main([entry])
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
