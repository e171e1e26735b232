"""The executor: boots services as real processes and supervises them.

One supervisor thread (:mod:`pykernel._supervise_loop`) owns every child: it waits on
pidfds, notify pipes and a wake pipe, with timers for readiness deadlines, restart backoff
and stop grace. No fixed sleeps anywhere: a service is ready when it says ``READY=1``.

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
import os
import selectors
import threading
import time
from collections.abc import Callable

from pykernel._supervise import (
    ExecutorError,
    ExecutorPhase,
    ExecutorStatus,
    ServiceSpec,
    ServiceState,
    SpecError,
)
from pykernel._supervise_loop import Callback, SupervisorLoop
from pykernel._supervise_proc import builtin_services, killpg

__all__ = ["Executor", "builtin_services"]


class Executor(SupervisorLoop):
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
                if svc.proc is not None and svc.state.alive and killpg(svc.proc.pid, signum):
                    sent.append(svc.spec.name)
        return sent

    def stop_service(self, name: str) -> None:
        """Stop one service (SIGTERM to its group, SIGKILL after its grace) and keep it down.

        Returns once the stop is under way; the changes arrive through the callbacks.

        Raises:
            ExecutorError: unknown service, or the system is not running.

        """
        with self._lock:
            svc = self._running_service(name, "stop")
            svc.restart_requested = False
            if svc.state is ServiceState.BACKOFF:
                svc.deadline = None
                self._set(svc, ServiceState.STOPPED, "restart cancelled by request")
            elif svc.state.alive and not svc.stop_sent:
                self._terminate(svc, "SIGTERM sent (stop requested)")
            self._wake()

    def start_service(self, name: str) -> None:
        """Start a stopped or failed service again (with a fresh backoff count).

        Raises:
            ExecutorError: unknown service, the system is not running, or the service is
                not stopped or failed.

        """
        with self._lock:
            svc = self._running_service(name, "start")
            if not svc.state.final:
                raise ExecutorError(f"service {name!r} is {svc.state.value}, not stopped "
                                    "or failed")
            svc.failures = 0
            svc.want_start = True
            self._wake()

    def restart_service(self, name: str) -> None:
        """Stop a service if it runs (or cancel its pending restart), then start it.

        Raises:
            ExecutorError: unknown service, or the system is not running.

        """
        with self._lock:
            svc = self._running_service(name, "restart")
            svc.failures = 0
            if svc.state.alive:
                svc.restart_requested = True
                if not svc.stop_sent:
                    self._terminate(svc, "SIGTERM sent (restart requested)")
            else:
                svc.deadline = None
                svc.want_start = True
            self._wake()


    def replace_spec(self, spec: ServiceSpec) -> None:
        """Give service ``spec.name`` a new spec, used from its next start on.

        A running process keeps what it was started with (its environment cannot change
        under it): restart the service to apply the new spec. The dependencies must stay
        the same, since the start and stop order were derived from them.

        Raises:
            SpecError: the spec is invalid, names no service, is a built-in, or changes
                ``depends_on``.

        """
        spec.validate()
        with self._lock:
            svc = self._services.get(spec.name)
            if svc is None or svc.builtin:
                raise SpecError(spec.name, "name", "is not a (non-built-in) service")
            if spec.depends_on != svc.spec.depends_on:
                raise SpecError(spec.name, "depends_on", "cannot change while the executor "
                                "exists")
            svc.spec = spec

    def spec(self, name: str) -> ServiceSpec:
        """Return the spec service ``name`` starts with next.

        Raises:
            ExecutorError: no such service.

        """
        with self._lock:
            svc = self._services.get(name)
            if svc is None:
                raise ExecutorError(f"no such service {name!r}")
            return svc.spec

    def wait_for(self, predicate: Callable[[ExecutorStatus], bool],
                 timeout: float) -> ExecutorStatus | None:
        """Wait until ``predicate(status)`` holds; return that status, or None on timeout.

        The predicate is checked after every supervisor round (each state change wakes
        it) and must be quick. Never call it from a subscriber (the supervisor thread).
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                status = self.status()
                if predicate(status):
                    return status
                left = deadline - time.monotonic()
                if left <= 0 or self._phase is ExecutorPhase.STOPPED:
                    return None
                self._cond.wait(min(left, 0.5))
