"""``pykernel up FILE``: lint, plan, create pipes, boot, run until signalled, tear down.

Output: on a terminal, one self-overwriting status line (servers running, restarts,
failures) plus a line per failure; piped, only failures (stderr). ``--json-status``
prints one JSON object per line on stdout instead: ``{"event": "service", ...}`` per state
change, ``{"event": "up", ...}`` once booted, ``{"event": "stopped", ...}`` at the end.

The control surface (HTTP API and HMI page, see ``control.state_kernel.LiveSystem``) runs
beside the system on ``--surface HOST:PORT`` (default 127.0.0.1 and a free port; its URL is
printed and written to ``surface.json`` in the run directory); ``--no-surface`` skips it.
Run-time ``pykernel connect``/``disconnect`` go through it to the kernel, which rewires the
running system (:mod:`control.kernel_rewire`).

Hostess (``--hostess-db PATH``, default ``$PYKERNEL_HOSTESS_DB``, else ``hostess.sqlite`` in
the run directory, so two systems never share a connectome record; ``--no-hostess`` skips
it): every server registers when it is ready and leaves when it stops, the connectome is
exchanged on every change, its routes are served under ``/api/hostess/`` on the control
surface, and the servers get its path in ``$PYKERNEL_HOSTESS_DB`` (so discovery's vetted
peers land in the same registry).

Signals: SIGINT/SIGTERM stop the system cleanly (dependents first); SIGHUP, SIGUSR1 and
SIGUSR2 are forwarded to every server.

Exit status: 0 stopped cleanly; 1 the wiring file has errors; 2 bad arguments; 4 a server
failed to boot; 5 a pipe could not be created; 6 the system ran but a server failed or had
to be killed at shutdown; 7 the system is already up; 130 interrupted during boot.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pykernel._progress import Progress
from pykernel._supervise import ExecutorStatus, ServiceState, ServiceStatus

if TYPE_CHECKING:  # the kernel and plan load when `up` runs: `pykernel` starts fast
    from control.kernel import Kernel

EXIT_SERVER_FAILED = 6
HOSTESS_DB = "hostess.sqlite"
"""The Hostess registry's file in the run directory (without ``--hostess-db`` or
``$PYKERNEL_HOSTESS_DB``)."""
HOSTESS_ENV = "PYKERNEL_HOSTESS_DB"
"""The registry path: read as the default, and set for the servers to the one in use."""
EXIT_INTERRUPTED = 130
_FORWARDED = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``up`` verb to the ``pykernel`` command."""
    up = subparsers.add_parser(
        "up", help="run a wiring file's system until signalled",
        description="Lint and plan FILE, create its pipes, boot the built-ins and its "
                    "servers, and run until SIGINT/SIGTERM; then stop everything and "
                    "remove the pipes. Exit status says what failed.")
    up.add_argument("file", metavar="FILE", help="the YAML wiring file")
    up.add_argument("--run-dir", type=Path, default=None,
                    help="logs and lock (default: $XDG_RUNTIME_DIR/pykernel/SYSTEM)")
    up.add_argument("--ready-timeout", type=_seconds, default=None, metavar="S",
                    help="seconds a server has to attach its terminals (default 10)")
    up.add_argument("--grace", type=_seconds, default=None, metavar="S",
                    help="seconds between SIGTERM and SIGKILL at shutdown (default 5)")
    up.add_argument("--no-fork", dest="fork", action="store_false",
                    help="exec a fresh interpreter per Python server instead of forking "
                         "the (already warm) kernel")
    up.add_argument("--surface", type=_address, default=("127.0.0.1", 0), metavar="HOST:PORT",
                    help="where the control surface and HMI listen (default 127.0.0.1:0, "
                         "a free port; the URL is in the run directory's surface.json)")
    up.add_argument("--no-surface", dest="surface", action="store_const", const=None,
                    help="run without the control surface")
    up.add_argument("--hostess-db", type=Path, default=None, metavar="PATH",
                    help="the Hostess registry servers register in while they run "
                         "(default: $PYKERNEL_HOSTESS_DB, else RUN_DIR/hostess.sqlite; its "
                         "routes are served under /api/hostess/ on the control surface, "
                         "and servers get its path in $PYKERNEL_HOSTESS_DB)")
    up.add_argument("--no-hostess", dest="hostess", action="store_false",
                    help="run without Hostess")
    up.add_argument("--json-status", "--json", dest="json_status", action="store_true",
                    help="print state changes as JSON lines on stdout")
    up.set_defaults(func=_up)


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return value


class _Reporter:
    """Turns state changes into the status line, failure lines or JSON lines."""

    def __init__(self, kernel: Kernel, json_lines: bool, out: TextIO, err: TextIO) -> None:
        self.kernel = kernel
        self.json_lines = json_lines
        self.out, self.err = out, err
        self.progress = Progress(err if not json_lines else None)
        if json_lines:
            self.progress.enabled = False
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.surface: str | None = None

    def changed(self, status: ServiceStatus, previous: ServiceState) -> None:
        with self.lock:
            if self.json_lines:
                self.line({"event": "service", "previous": previous.value, **status.to_dict()})
            elif status.state in (ServiceState.FAILED, ServiceState.BACKOFF) or (
                status.state is ServiceState.STOPPED and status.killed
            ):
                self.progress.done()
                self.err.write(f"pykernel: {status.name}: {status.state.value}: "
                               f"{status.reason} (log: {status.log_path})\n")
                self.err.flush()

    def line(self, data: dict[str, Any]) -> None:
        self.out.write(json.dumps(data, sort_keys=True) + "\n")
        self.out.flush()

    def up(self, status: ExecutorStatus) -> None:
        plan = self.kernel.plan
        with self.lock:
            if self.json_lines:
                self.line({"event": "up", "system": plan.system,
                           "connectome_id": plan.connectome_id, "pipes": len(plan.pipes),
                           "surface": self.surface, **status.to_dict()})
            elif self.progress.enabled:
                hmi = f"; HMI {self.surface}/" if self.surface else ""
                self.err.write(f"{plan.system}: up, {len(plan.servers)} servers, "
                               f"{len(plan.pipes)} pipes; logs in {status.run_dir}{hmi}; "
                               "Ctrl-C stops\n")

    def tick(self) -> None:
        if not self.progress.enabled:
            return
        status = self.kernel.status()
        servers = [s for s in status.services if not s.builtin]
        running = sum(s.state is ServiceState.RUNNING for s in servers)
        restarts = sum(s.restarts for s in servers)
        bad = [s.name for s in servers if s.state in (ServiceState.FAILED, ServiceState.BACKOFF)]
        uptime = int(time.monotonic() - self.started)
        text = (f"{self.kernel.plan.system}: {running}/{len(servers)} running, "
                f"{restarts} restarts, up {uptime // 60}m{uptime % 60:02d}s")
        if bad:
            text += f", trouble: {', '.join(bad)}"
        details = [f"{s.name}: {s.detail}" for s in servers if s.detail]
        if details:
            text += " | " + "; ".join(details)
        width = shutil.get_terminal_size((100, 24)).columns - 1
        with self.lock:
            self.progress.update(text if len(text) <= width else text[:width - 1] + "…")

    def stopped(self, status: ExecutorStatus, code: int) -> None:
        with self.lock:
            self.progress.done()
            if self.json_lines:
                self.line({"event": "stopped", "exit_code": code, **status.to_dict()})
            elif self.progress.enabled:
                self.err.write(f"{self.kernel.plan.system}: stopped"
                               f"{'' if code == 0 else ' with failures'}\n")


def final_exit_code(status: ExecutorStatus) -> int:
    """Return 0 when every server ended cleanly, else ``EXIT_SERVER_FAILED``."""
    for svc in status.services:
        if svc.state is ServiceState.FAILED or svc.killed:
            return EXIT_SERVER_FAILED
    return 0


class _Guests:
    """Hostess beside a kernel: servers register when ready and leave when they stop.

    Its routes are mounted on the control surface (``/api/hostess/``), and with a surface
    the connectome is exchanged (:class:`control.hostess.hooks.KernelHooks`).
    """

    def __init__(self, kernel: Kernel, live: Any, path: Path) -> None:
        from control.hostess import Hostess
        from control.hostess import api as hostess_api
        from control.hostess.hooks import KernelHooks

        self.hostess = Hostess(path)
        try:
            self.hooks = KernelHooks(self.hostess, kernel.plan,
                                     state=live.state if live is not None else None)
        except BaseException:
            self.hostess.close()
            raise
        kernel.subscribe(self.hooks)
        self._open = True
        os.register_at_fork(before=self._before_fork, after_in_parent=self._after_fork,
                            after_in_child=self._in_child)
        if live is not None:
            live.surface.mount("/api/hostess/", hostess_api.mount(self.hostess,
                                                                  live.surface.authorize),
                               hostess_api.OPENAPI_PATHS)
        self.hooks.start()

    # A server forked by the kernel must not inherit this process's SQLite connection: a
    # fork in the middle of a Hostess call leaves SQLite's per-process lock records
    # claiming locks the child does not hold, and the server's own connection to the same
    # registry (discovery's) then fails with "locking protocol". So no fork happens during
    # a Hostess call, and the child drops the inherited connection before anything else
    # (SQLite sees the parent's lock, so the child's close neither checkpoints nor removes
    # the WAL). Hostess offers no public hook for this yet, hence its private lock and
    # connection.
    def _before_fork(self) -> None:
        if self._open:
            self.hostess._lock.acquire()

    def _after_fork(self) -> None:
        if self._open:
            self.hostess._lock.release()

    def _in_child(self) -> None:
        if self._open:
            self._open = False
            self.hostess._lock.release()
            with contextlib.suppress(Exception):
                self.hostess._db.close()

    def close(self) -> None:
        """Every server still registered leaves; the registry is closed."""
        try:
            self.hooks.stop()
        finally:
            with self.hostess._lock:  # no fork in between
                self._open = False
            self.hostess.close()


class _StopRequest(Exception):
    """Raised from the signal handler to leave a boot in progress."""


def _up(args: argparse.Namespace) -> int:
    from control.kernel import DEFAULT_READY_TIMEOUT, DEFAULT_STOP_GRACE, Kernel, KernelError
    from control.plan import build_plan

    plan = build_plan(args.file)
    ready = DEFAULT_READY_TIMEOUT if args.ready_timeout is None else args.ready_timeout
    grace = DEFAULT_STOP_GRACE if args.grace is None else args.grace
    kernel = Kernel(plan, run_dir=args.run_dir, ready_timeout=ready, stop_grace=grace,
                    fork_python=args.fork)
    reporter = _Reporter(kernel, args.json_status, sys.stdout, sys.stderr)
    kernel.subscribe(reporter.changed)
    stop = threading.Event()
    booting = True

    def on_stop(signum: int, frame: object) -> None:
        nonlocal booting
        stop.set()
        if booting:
            booting = False  # a second signal must not interrupt the clean-up
            raise _StopRequest

    def on_forward(signum: int, frame: object) -> None:
        kernel.executor.signal_all(signum)

    previous = {s: signal.signal(s, on_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    previous.update({s: signal.signal(s, on_forward) for s in _FORWARDED})
    live = None
    guests: _Guests | None = None
    try:
        kernel.acquire()  # before the surface writes its token into the run directory
        if args.surface is not None:
            from control.state_kernel import LiveSystem

            try:
                live = LiveSystem(kernel, host=args.surface[0], port=args.surface[1]).start()
            except OSError as exc:
                raise KernelError(f"control surface cannot listen on "
                                  f"{args.surface[0]}:{args.surface[1]}: "
                                  f"{exc.strerror or exc}") from exc
            reporter.surface = live.url
        if args.hostess:
            db = args.hostess_db or Path(os.environ.get(HOSTESS_ENV) or
                                         kernel.run_dir / HOSTESS_DB)
            guests = _Guests(kernel, live, db)
            # Servers that use Hostess themselves (discovery's peers) find the same registry.
            os.environ[HOSTESS_ENV] = str(db.resolve())
        try:
            status = kernel.start()
        except _StopRequest:
            kernel.stop(keep_lock=True)
            return EXIT_INTERRUPTED
        booting = False
        if live is not None:
            live.booted()
        reporter.up(status)
        while not stop.wait(0.5):
            reporter.tick()
        if live is not None:
            live.stopping()
        final = kernel.stop(keep_lock=True)
        code = final_exit_code(final)
        reporter.stopped(final, code)
        return code
    finally:
        booting = False
        try:
            if live is not None:
                live.stop()
        finally:
            try:
                kernel.stop(keep_lock=True)  # a no-op after a clean stop
                if guests is not None:
                    guests.close()
            finally:
                kernel.release()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
