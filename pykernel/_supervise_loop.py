"""The executor's supervisor loop: one thread that owns every child process.

It waits on a selector holding, per service, a pidfd (readable when the process exits) and
the read end of its notify pipe, plus a wake pipe for requests from other threads; timers
(readiness deadlines, restart backoff, stop grace) bound the wait. Every change of a
service goes through :meth:`SupervisorLoop._set`, which calls the subscribers in order.
:class:`pykernel._executor.Executor` is the public face built on it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pykernel._supervise import (
    EX_CONFIG,
    READY_LINE,
    STATUS_PREFIX,
    BootError,
    ExecutorError,
    ExecutorPhase,
    ServiceSpec,
    ServiceState,
    ServiceStatus,
    SpecError,
    backoff_delay,
    describe_exit,
    parse_notify,
    should_restart,
)
from pykernel._supervise_proc import (
    Process,
    builtin_services,
    check_acyclic,
    killpg,
    log_line,
    log_tail,
    spawn,
)

log = logging.getLogger("pykernel.executor")

Callback = Callable[[ServiceStatus, ServiceState], None]
_ORPHAN_TICK = 0.5  # seconds between waitpid(-1) sweeps when reaping everything
_EXIT_SPAWN_FAILED = 127


class _Service:
    """The supervisor's mutable record of one service (owned by the supervisor thread)."""

    def __init__(self, spec: ServiceSpec, builtin: bool, deps: tuple[str, ...], log_path: Path):
        self.spec = spec
        self.builtin = builtin
        self.deps = deps
        self.dependents: list[str] = []
        self.log_path = log_path
        self.state = ServiceState.PENDING
        self.proc: Process | None = None
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
        self.want_start = False  # a start was requested (start/restart_service)
        self.restart_requested = False  # start again once the requested stop is done

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


class SupervisorLoop:
    """The executor's state and its supervisor thread (see :class:`Executor`)."""

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
        check_acyclic({name: svc.spec.depends_on for name, svc in table.items()})
        return table

    def _running_service(self, name: str, verb: str) -> _Service:
        svc = self._services.get(name)
        if svc is None:
            raise ExecutorError(f"cannot {verb} {name!r}: no such service")
        if self._phase is not ExecutorPhase.RUNNING:
            raise ExecutorError(f"cannot {verb} {name!r}: the executor is "
                                f"{self._phase.value}")
        return svc

    def _terminate(self, svc: _Service, reason: str) -> None:
        assert svc.proc is not None
        svc.stop_sent = True
        svc.deadline = time.monotonic() + svc.spec.stop_grace
        killpg(svc.proc.pid, signal.SIGTERM)
        self._set(svc, ServiceState.STOPPING, reason)

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
                        killpg(svc.proc.pid, signal.SIGKILL)
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
            killed=svc.killed,
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
        if self._phase is ExecutorPhase.RUNNING:
            for svc in self._services.values():
                if svc.want_start:
                    svc.want_start = False
                    self._spawn(svc)
        if self._phase is ExecutorPhase.STOPPING:
            self._advance_stop()

    def _advance_stop(self) -> None:
        for name in reversed(self._order):
            svc = self._services[name]
            svc.want_start = svc.restart_requested = False
            if svc.state in (ServiceState.PENDING, ServiceState.BACKOFF):
                svc.deadline = None
                self._set(svc, ServiceState.STOPPED, "never started" if svc.starts == 0
                          else "restart cancelled by shutdown")
            elif svc.state.alive and not svc.stop_sent and not any(
                self._services[d].state.alive for d in svc.dependents
            ):
                self._terminate(svc, "SIGTERM sent")
        if not any(s.state.alive for s in self._services.values()):
            self._phase = ExecutorPhase.STOPPED

    def _spawn(self, svc: _Service) -> None:
        spec = svc.spec
        svc.starts += 1
        svc.stop_sent = svc.killed = False
        svc.fail_reason = ""
        svc.ready_at = None
        svc.detail = ""
        try:
            svc.proc, svc.notify_fd = spawn(spec, start_no=svc.starts, log_path=svc.log_path,
                                            run_dir=self.run_dir)
        except OSError as exc:
            svc.proc = None
            self._failed_spawn(svc, f"could not be started: {exc.strerror or exc}: "
                                    f"{exc.filename or spec.argv[0]}")
            return
        assert self._sel is not None
        self._by_pid[svc.proc.pid] = svc
        svc.pidfd = os.pidfd_open(svc.proc.pid)
        self._sel.register(svc.pidfd, selectors.EVENT_READ, ("pid", svc))
        self._set(svc, ServiceState.STARTING, f"pid {svc.proc.pid}")
        if svc.notify_fd is not None:
            svc.notify_buf = b""
            self._sel.register(svc.notify_fd, selectors.EVENT_READ, ("notify", svc))
            svc.deadline = time.monotonic() + spec.ready_timeout
        else:
            svc.deadline = None
            self._became_ready(svc)

    def _failed_spawn(self, svc: _Service, reason: str) -> None:
        svc.last_exit = _EXIT_SPAWN_FAILED
        log_line(svc.log_path, reason)
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
                killpg(svc.proc.pid, signal.SIGKILL)
                if self._phase is ExecutorPhase.BOOTING:
                    self._fail_boot(svc, svc.fail_reason)
            elif svc.state is ServiceState.BACKOFF and self._phase is ExecutorPhase.RUNNING:
                self._spawn(svc)
            elif svc.state is ServiceState.STOPPING and svc.proc is not None:
                svc.killed = True
                killpg(svc.proc.pid, signal.SIGKILL)

    def _fail_boot(self, svc: _Service, reason: str) -> None:
        if self._boot_error is None:
            self._boot_error = BootError(svc.spec.name, reason, str(svc.log_path),
                                         log_tail(svc.log_path))
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
        log_line(svc.log_path, describe_exit(code))
        if svc.stop_sent and not svc.fail_reason:
            why = (f"did not stop within {svc.spec.stop_grace:g} s; killed" if svc.killed
                   else f"stopped ({describe_exit(code)})")
            self._set(svc, ServiceState.STOPPED, why)
            if svc.restart_requested and self._phase is ExecutorPhase.RUNNING:
                svc.restart_requested = False
                svc.want_start = True
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
        # EX_CONFIG: a configuration error, which retrying cannot fix (should_restart says no)
        if should_restart(spec.restart, code if code == EX_CONFIG else int(failed)):
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
        self._drop_fd(svc.notify_fd)
        svc.notify_fd = None

    def _close_fds(self, svc: _Service) -> None:
        self._close_notify(svc)
        self._drop_fd(svc.pidfd)
        svc.pidfd = None

    def _drop_fd(self, fd: int | None) -> None:
        """Unregister ``fd`` from the selector (if there) and close it."""
        if fd is None:
            return
        if self._sel is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(fd)
        os.close(fd)
