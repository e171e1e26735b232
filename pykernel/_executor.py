"""The executor: boots services as real processes and supervises them.

One supervisor thread owns every child. It waits on a selector holding, per service, a
pidfd (readable when the process exits) and the read end of its notify pipe, plus a wake
pipe for requests from other threads; timers (readiness deadlines, restart backoff, stop
grace) bound the wait. No fixed sleeps anywhere: a service is ready when it says
``READY=1``.

Order: the built-ins (:func:`builtin_services`, an explicit list) start first; every other
service implicitly depends on them. A service starts once everything it depends on is
ready, so independent services start side by side. Shutdown runs the same relation
backwards: a service gets SIGTERM (to its whole process group) once every service that
depends on it has stopped, and SIGKILL after its grace period.

Reaping: normally each child is reaped by pid. As PID 1 (for example in a PID namespace or
a container) orphans are re-parented to us, so the loop also reaps ``waitpid(-1)`` and
counts the strangers.

Callbacks registered with :meth:`Executor.subscribe` run on the supervisor thread, in the
order the changes happen, with ``(new ServiceStatus, previous ServiceState)``; keep them
short. They may call :meth:`Executor.status`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pykernel._supervise import (
    NOTIFY_ENV,
    READY_LINE,
    RUN_DIR_ENV,
    STATUS_PREFIX,
    BootError,
    ExecutorError,
    ExecutorPhase,
    ExecutorStatus,
    ServiceSpec,
    ServiceState,
    ServiceStatus,
    SpecError,
    backoff_delay,
    describe_exit,
    parse_notify,
    should_restart,
)
from pykernel._supervise_fork import ForkedProcess, fork_python_server

__all__ = ["Executor", "builtin_services"]

log = logging.getLogger("pykernel.executor")

Callback = Callable[[ServiceStatus, ServiceState], None]
_ORPHAN_TICK = 0.5  # seconds between waitpid(-1) sweeps when reaping everything
_EXIT_SPAWN_FAILED = 127


def builtin_services(python: str | None = None, heartbeat: float = 1.0) -> tuple[ServiceSpec, ...]:
    """Return the built-in services, started before any other (the list is explicit).

    - ``pykernel.housekeeping``: writes a heartbeat file in the run directory and removes
      stale pipes (segments whose processes are all gone) at start and periodically.

    Args:
        python: the interpreter to run them with (default: this one).
        heartbeat: seconds between heartbeats.

    """
    exe = python or sys.executable
    return (
        ServiceSpec(
            name="pykernel.housekeeping",
            argv=(exe, "-m", "pykernel._supervise_builtins", "housekeeping",
                  "--interval", repr(float(heartbeat))),
            restart="always",
            backoff_initial=0.5,
            backoff_max=10.0,
            ready_timeout=15.0,
            stop_grace=2.0,
        ),
    )


class _Service:
    """The supervisor's mutable record of one service (owned by the supervisor thread)."""

    def __init__(self, spec: ServiceSpec, builtin: bool, deps: tuple[str, ...], log_path: Path):
        self.spec = spec
        self.builtin = builtin
        self.deps = deps
        self.dependents: list[str] = []
        self.log_path = log_path
        self.state = ServiceState.PENDING
        self.proc: subprocess.Popen[bytes] | ForkedProcess | None = None
        self.pidfd: int | None = None
        self.notify_fd: int | None = None
        self.notify_buf = b""
        self.deadline: float | None = None
        self.starts = 0
        self.failures = 0
        self.last_exit: int | None = None
        self.reason = ""
        self.detail = ""
        self.backoff = 0.0
        self.since = time.time()
        self.ready_at: float | None = None
        self.stop_sent = False
        self.killed = False
        self.fail_reason = ""  # set when we kill it for a failure (readiness timeout)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


class Executor:
    """Boots services in dependency order, supervises them, shuts them down in reverse.

    Args:
        services: the services to run after the built-ins.
        run_dir: directory for per-service logs (``<name>.log``); created if missing.
        builtins: the built-in services (default :func:`builtin_services`); ``()`` for none.
        reap_all: also reap processes that are not ours (default: when we are PID 1).
        on_change: a first subscriber (see :meth:`subscribe`).

    Raises:
        SpecError: duplicate names, unknown dependencies or a dependency cycle.

    """

    def __init__(
        self,
        services: Sequence[ServiceSpec],
        *,
        run_dir: str | os.PathLike[str],
        builtins: Sequence[ServiceSpec] | None = None,
        reap_all: bool | None = None,
        on_change: Callback | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        builtin_specs = tuple(builtin_services() if builtins is None else builtins)
        self._services = self._build(builtin_specs, tuple(services))
        self._order = list(self._services)
        self._reap_all = (os.getpid() == 1) if reap_all is None else reap_all
        self._subscribers: list[Callback] = [on_change] if on_change else []
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._phase = ExecutorPhase.IDLE
        self._boot_error: BootError | None = None
        self._orphans = 0
        self._by_pid: dict[int, _Service] = {}
        self._thread: threading.Thread | None = None
        self._sel: selectors.BaseSelector | None = None
        self._wake_r = self._wake_w = -1
        self._next_sweep = 0.0

    # ----------------------------------------------------------------- construction
    def _build(
        self, builtins: tuple[ServiceSpec, ...], services: tuple[ServiceSpec, ...]
    ) -> dict[str, _Service]:
        table: dict[str, _Service] = {}
        builtin_names = tuple(s.name for s in builtins)
        for spec, builtin in [(s, True) for s in builtins] + [(s, False) for s in services]:
            if not isinstance(spec, ServiceSpec):
                raise SpecError(str(spec), "spec", "is not a ServiceSpec")
            if spec.name in table:
                raise SpecError(spec.name, "name", "is used by two services")
            deps = spec.depends_on if builtin else builtin_names + spec.depends_on
            table[spec.name] = _Service(spec, builtin, deps, self.run_dir / f"{spec.name}.log")
        for svc in table.values():
            for dep in svc.spec.depends_on:
                if dep not in table:
                    raise SpecError(svc.spec.name, "depends_on", f"unknown service {dep!r}")
                table[dep].dependents.append(svc.spec.name)
            if not svc.builtin:
                for dep in builtin_names:
                    table[dep].dependents.append(svc.spec.name)
        _check_acyclic(table)
        return table

    # ----------------------------------------------------------------- public API
    def subscribe(self, callback: Callback) -> Callable[[], None]:
        """Call ``callback(status, previous_state)`` on every state change.

        Returns:
            A function that removes the subscription.

        """
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    def status(self) -> ExecutorStatus:
        """Return a snapshot of the executor and every service (start order)."""
        with self._lock:
            return ExecutorStatus(
                phase=self._phase,
                services=tuple(self._snapshot(s) for s in self._services.values()),
                orphans_reaped=self._orphans,
                run_dir=str(self.run_dir),
            )

    @property
    def phase(self) -> ExecutorPhase:
        """The executor's current phase."""
        with self._lock:
            return self._phase

    def start(self) -> ExecutorStatus:
        """Boot the built-ins and then every service; return once all are running.

        Raises:
            BootError: a service exited, could not be spawned or did not become ready in
                time; everything already started has been stopped.
            ExecutorError: the executor was already started, or the run directory cannot
                be created.

        """
        with self._lock:
            if self._phase is not ExecutorPhase.IDLE:
                raise ExecutorError(f"executor already {self._phase.value}")
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ExecutorError(
                    f"cannot create run directory {self.run_dir}: {exc.strerror}"
                ) from exc
            self._sel = selectors.DefaultSelector()
            self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self._sel.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
            self._phase = ExecutorPhase.BOOTING
            self._thread = threading.Thread(
                target=self._loop, name="pykernel-executor", daemon=True
            )
            self._thread.start()
            while self._phase is ExecutorPhase.BOOTING:
                self._cond.wait()
        if self._boot_error is not None:
            self.wait_stopped()
            raise self._boot_error
        if self.phase is not ExecutorPhase.RUNNING:
            self.wait_stopped()
            raise ExecutorError("boot interrupted by shutdown")
        return self.status()

    def shutdown(self, timeout: float | None = None) -> ExecutorStatus:
        """Stop every service (dependents first), then the built-ins; wait for all exits.

        Idempotent. Each service gets SIGTERM, then SIGKILL after its ``stop_grace``.

        Args:
            timeout: give up waiting after this many seconds (None: wait for every exit,
                which the grace periods bound).

        Returns:
            The final status.

        """
        with self._lock:
            if self._phase is ExecutorPhase.IDLE:
                self._phase = ExecutorPhase.STOPPED
            elif self._phase in (ExecutorPhase.BOOTING, ExecutorPhase.RUNNING):
                self._phase = ExecutorPhase.STOPPING
                self._wake()
        self.wait_stopped(timeout)
        return self.status()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Wait until the executor has stopped; return False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._phase is not ExecutorPhase.STOPPED:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        return True

    def signal_all(self, signum: int) -> list[str]:
        """Forward ``signum`` to every live service's process group.

        Returns:
            The names of the services signalled.

        """
        sent = []
        with self._lock:
            for svc in self._services.values():
                if svc.proc is not None and svc.state.alive and _killpg(svc.proc.pid, signum):
                    sent.append(svc.spec.name)
        return sent

    # ----------------------------------------------------------------- the loop
    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"x")

    def _loop(self) -> None:
        assert self._sel is not None
        try:
            with self._lock:
                self._advance()
                self._cond.notify_all()
            while True:
                with self._lock:
                    if self._phase is ExecutorPhase.STOPPED:
                        break
                    timeout = self._timeout()
                events = self._sel.select(timeout)
                with self._lock:
                    for key, _ in events:
                        kind, svc = key.data
                        if kind == "wake":
                            with contextlib.suppress(BlockingIOError):
                                os.read(self._wake_r, 4096)
                        elif kind == "notify":
                            self._read_notify(svc)
                    self._reap()
                    self._timers()
                    self._advance()
                    self._cond.notify_all()
        except BaseException:
            log.exception("executor loop crashed; killing every service")
            with self._lock:
                for svc in self._services.values():
                    if svc.proc is not None and svc.state.alive:
                        _killpg(svc.proc.pid, signal.SIGKILL)
                self._phase = ExecutorPhase.STOPPED
                self._cond.notify_all()
            raise
        finally:
            self._close_loop()

    def _close_loop(self) -> None:
        with self._lock:
            for svc in self._services.values():
                self._close_fds(svc)
            if self._sel is not None:
                self._sel.close()
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _timeout(self) -> float | None:
        deadlines = [s.deadline for s in self._services.values() if s.deadline is not None]
        if self._reap_all:
            deadlines.append(self._next_sweep)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    # ----------------------------------------------------------------- transitions
    def _set(self, svc: _Service, state: ServiceState, reason: str = "") -> None:
        previous = svc.state
        svc.state = state
        svc.reason = reason
        svc.since = time.time()
        if state is not ServiceState.BACKOFF:
            svc.backoff = 0.0
        status = self._snapshot(svc)
        for callback in list(self._subscribers):
            try:
                callback(status, previous)
            except Exception:
                log.exception("executor subscriber %r failed", callback)

    def _snapshot(self, svc: _Service) -> ServiceStatus:
        return ServiceStatus(
            name=svc.spec.name,
            state=svc.state,
            pid=svc.pid if svc.state.alive else None,
            builtin=svc.builtin,
            starts=svc.starts,
            restarts=max(0, svc.starts - 1),
            last_exit=svc.last_exit,
            reason=svc.reason,
            detail=svc.detail,
            backoff=svc.backoff,
            since=svc.since,
            log_path=str(svc.log_path),
        )

    def _advance(self) -> None:
        """Start what may start, stop what may stop, and move the phase on."""
        if self._phase is ExecutorPhase.BOOTING:
            for svc in self._services.values():
                if svc.state is ServiceState.PENDING and all(
                    self._services[d].state.up for d in svc.deps
                ):
                    self._spawn(svc)
                    if self._phase is not ExecutorPhase.BOOTING:
                        break
            if self._phase is ExecutorPhase.BOOTING and all(
                s.state.up for s in self._services.values()
            ):
                self._phase = ExecutorPhase.RUNNING
                for svc in self._services.values():
                    self._set(svc, ServiceState.RUNNING)
        if self._phase is ExecutorPhase.STOPPING:
            self._advance_stop()

    def _advance_stop(self) -> None:
        now = time.monotonic()
        for name in reversed(self._order):
            svc = self._services[name]
            if svc.state in (ServiceState.PENDING, ServiceState.BACKOFF):
                svc.deadline = None
                self._set(svc, ServiceState.STOPPED, "never started" if svc.starts == 0
                          else "restart cancelled by shutdown")
            elif svc.state.alive and not svc.stop_sent and not any(
                self._services[d].state.alive for d in svc.dependents
            ):
                svc.stop_sent = True
                svc.deadline = now + svc.spec.stop_grace
                assert svc.proc is not None
                _killpg(svc.proc.pid, signal.SIGTERM)
                if svc.state is not ServiceState.STOPPING:
                    self._set(svc, ServiceState.STOPPING, "SIGTERM sent")
        if not any(s.state.alive for s in self._services.values()):
            self._phase = ExecutorPhase.STOPPED

    def _spawn(self, svc: _Service) -> None:
        spec = svc.spec
        svc.starts += 1
        svc.stop_sent = svc.killed = False
        svc.fail_reason = ""
        svc.ready_at = None
        svc.detail = ""
        env = dict(os.environ)
        env.update(spec.env)
        env[RUN_DIR_ENV] = str(self.run_dir)
        read_fd = write_fd = -1
        if spec.notify:
            read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
            os.set_blocking(read_fd, False)
            env[NOTIFY_ENV] = str(write_fd)
        else:
            env.pop(NOTIFY_ENV, None)
        try:
            with open(svc.log_path, "ab", buffering=0) as logf:
                logf.write(
                    f"--- pykernel executor: start #{svc.starts} at "
                    f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')}: {' '.join(spec.argv)}\n".encode()
                )
                if spec.fork_entry:
                    svc.proc = fork_python_server(spec.fork_entry, spec.argv, env, spec.cwd,
                                                  logf.fileno(), write_fd if spec.notify
                                                  else None)
                else:
                    svc.proc = subprocess.Popen(
                        spec.argv,
                        stdin=subprocess.DEVNULL,
                        stdout=logf,
                        stderr=subprocess.STDOUT,
                        env=env,
                        cwd=spec.cwd,
                        pass_fds=(write_fd,) if spec.notify else (),
                        start_new_session=True,
                    )
        except OSError as exc:
            if read_fd >= 0:
                os.close(read_fd)
            svc.proc = None
            self._failed_spawn(svc, f"could not be started: {exc.strerror or exc}: "
                                    f"{exc.filename or spec.argv[0]}")
            return
        finally:
            if write_fd >= 0:
                os.close(write_fd)
        assert self._sel is not None
        self._by_pid[svc.proc.pid] = svc
        svc.pidfd = os.pidfd_open(svc.proc.pid)
        self._sel.register(svc.pidfd, selectors.EVENT_READ, ("pid", svc))
        if spec.notify:
            svc.notify_fd = read_fd
            svc.notify_buf = b""
            self._sel.register(read_fd, selectors.EVENT_READ, ("notify", svc))
            svc.deadline = time.monotonic() + spec.ready_timeout
            self._set(svc, ServiceState.STARTING, f"pid {svc.proc.pid}")
        else:
            svc.deadline = None
            self._set(svc, ServiceState.STARTING, f"pid {svc.proc.pid}")
            self._became_ready(svc)

    def _failed_spawn(self, svc: _Service, reason: str) -> None:
        svc.last_exit = _EXIT_SPAWN_FAILED
        with contextlib.suppress(OSError), open(svc.log_path, "ab") as logf:
            logf.write(f"--- pykernel executor: {reason}\n".encode())
        if self._phase is ExecutorPhase.BOOTING:
            self._fail_boot(svc, reason)
        else:
            self._after_exit(svc, _EXIT_SPAWN_FAILED, reason)

    def _became_ready(self, svc: _Service) -> None:
        svc.ready_at = time.monotonic()
        svc.deadline = None
        self._set(svc, ServiceState.READY)
        if self._phase is ExecutorPhase.RUNNING:
            self._set(svc, ServiceState.RUNNING)

    def _read_notify(self, svc: _Service) -> None:
        if svc.notify_fd is None:
            return
        try:
            chunk = os.read(svc.notify_fd, 4096)
        except BlockingIOError:
            return
        if not chunk:  # the service closed its end (or exited)
            self._close_notify(svc)
            return
        lines, svc.notify_buf = parse_notify(svc.notify_buf + chunk)
        for line in lines:
            if line == READY_LINE and svc.state is ServiceState.STARTING:
                self._became_ready(svc)
            elif line.startswith(STATUS_PREFIX):
                svc.detail = line[len(STATUS_PREFIX):].decode("utf-8", "replace")[:200]

    def _timers(self) -> None:
        now = time.monotonic()
        for svc in list(self._services.values()):
            if svc.deadline is None or svc.deadline > now:
                continue
            svc.deadline = None
            if svc.state is ServiceState.STARTING and svc.proc is not None:
                svc.fail_reason = f"was not ready within {svc.spec.ready_timeout:g} s"
                svc.stop_sent = True
                _killpg(svc.proc.pid, signal.SIGKILL)
                if self._phase is ExecutorPhase.BOOTING:
                    self._fail_boot(svc, svc.fail_reason)
            elif svc.state is ServiceState.BACKOFF and self._phase is ExecutorPhase.RUNNING:
                self._spawn(svc)
            elif svc.state is ServiceState.STOPPING and svc.proc is not None:
                svc.killed = True
                _killpg(svc.proc.pid, signal.SIGKILL)

    def _fail_boot(self, svc: _Service, reason: str) -> None:
        if self._boot_error is None:
            self._boot_error = BootError(svc.spec.name, reason, str(svc.log_path),
                                         _tail(svc.log_path))
        gone = svc.proc is None or svc.proc.returncode is not None
        if gone and svc.state in (ServiceState.PENDING, ServiceState.STARTING):
            self._set(svc, ServiceState.FAILED, reason)
        self._phase = ExecutorPhase.STOPPING

    # ----------------------------------------------------------------- exits
    def _reap(self) -> None:
        now = time.monotonic()
        if self._reap_all:
            self._next_sweep = now + _ORPHAN_TICK
            while True:
                try:
                    pid, wstatus = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                svc = self._by_pid.get(pid)
                if svc is None:
                    self._orphans += 1
                else:
                    self._exited(svc, os.waitstatus_to_exitcode(wstatus))
            return
        for pid, svc in list(self._by_pid.items()):
            try:
                got, wstatus = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # someone else reaped it: status unknown
                self._exited(svc, 255)
                continue
            if got:
                self._exited(svc, os.waitstatus_to_exitcode(wstatus))

    def _exited(self, svc: _Service, code: int) -> None:
        assert svc.proc is not None
        self._by_pid.pop(svc.proc.pid, None)
        svc.proc.returncode = code  # we reaped it: keep Popen from waiting again
        if svc.notify_fd is not None:
            self._read_notify(svc)  # a READY=1 written just before exiting still counts
        self._close_fds(svc)
        svc.last_exit = code
        svc.deadline = None
        with contextlib.suppress(OSError), open(svc.log_path, "ab") as logf:
            logf.write(f"--- pykernel executor: {describe_exit(code)}\n".encode())
        if svc.stop_sent and not svc.fail_reason:
            why = (f"did not stop within {svc.spec.stop_grace:g} s; killed" if svc.killed
                   else f"stopped ({describe_exit(code)})")
            self._set(svc, ServiceState.STOPPED, why)
            return
        if self._phase is ExecutorPhase.BOOTING or (
            self._boot_error is not None and svc.state is ServiceState.STARTING
        ):
            when = "during boot" if svc.ready_at is not None else "before it was ready"
            reason = svc.fail_reason or f"exited {when} ({describe_exit(code)})"
            self._fail_boot(svc, reason)
            self._set(svc, ServiceState.FAILED, reason)
            return
        if self._phase is ExecutorPhase.STOPPING:
            self._set(svc, ServiceState.STOPPED if code == 0 else ServiceState.FAILED,
                      describe_exit(code))
            return
        self._after_exit(svc, code, svc.fail_reason or describe_exit(code))

    def _after_exit(self, svc: _Service, code: int, reason: str) -> None:
        """Apply the restart policy to a service that ended while the system runs."""
        spec = svc.spec
        failed = code != 0 or bool(svc.fail_reason)
        if svc.ready_at is not None and time.monotonic() - svc.ready_at >= spec.backoff_max:
            svc.failures = 0  # it stayed up long enough: start the backoff over
        if should_restart(spec.restart, 1 if failed else 0):
            svc.failures += 1
            svc.backoff = backoff_delay(spec.backoff_initial, spec.backoff_max, svc.failures)
            svc.deadline = time.monotonic() + svc.backoff
            self._set_backoff(svc, f"{reason}; restart in {svc.backoff:g} s")
        else:
            self._set(svc, ServiceState.FAILED if failed else ServiceState.STOPPED, reason)

    def _set_backoff(self, svc: _Service, reason: str) -> None:
        delay = svc.backoff
        self._set(svc, ServiceState.BACKOFF, reason)
        svc.backoff = delay

    def _close_notify(self, svc: _Service) -> None:
        if svc.notify_fd is not None:
            if self._sel is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self._sel.unregister(svc.notify_fd)
            os.close(svc.notify_fd)
            svc.notify_fd = None

    def _close_fds(self, svc: _Service) -> None:
        self._close_notify(svc)
        if svc.pidfd is not None:
            if self._sel is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self._sel.unregister(svc.pidfd)
            os.close(svc.pidfd)
            svc.pidfd = None


def _killpg(pid: int, signum: int) -> bool:
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


def _tail(path: Path, limit: int = 2048) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    return "\n".join(x for x in lines if not x.startswith("--- pykernel executor:"))


def _check_acyclic(table: dict[str, _Service]) -> None:
    """Raise SpecError naming a dependency cycle, if there is one."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        path.append(name)
        for dep in table[name].spec.depends_on:
            if state.get(dep) == 1:
                cycle = [*path[path.index(dep):], dep]
                raise SpecError(name, "depends_on", "dependency cycle " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, path)
        path.pop()
        state[name] = 2

    for name in table:
        if name not in state:
            visit(name, [])

