"""The kernel: turns a plan into a running system and back into nothing.

``Kernel(plan).start()``: take the system's run-directory lock, create every planned pipe
(the kernel holds them open while it runs), then let the executor boot the built-ins and
the plan's servers in start order. ``stop()``: the executor stops the servers (dependents
first, SIGTERM, grace, SIGKILL), then every pipe is closed and unlinked and the lock
released. A failed start undoes what it did, so nothing is left behind either way.

Run-time rewiring: :meth:`Kernel.connect` and :meth:`Kernel.disconnect` re-plan the running
system and carry the difference out (:mod:`control.kernel_rewire`): new pipes are created
(a multiplexer's or combiner's pipe is reused: the kernel creates fan pipes with spare
places), the servers whose terminals change are restarted with their new
``PYKERNEL_TERMINALS`` (a server reads its terminals only when it starts), unused pipes are
removed; a failure rolls everything back.

Python servers (``kind: python``) run as ``python -m pykernel.server ENTRY`` with the
plan's environment; command servers run their ``argv``. Both get the plan's environment
merged over the kernel's, plus ``PYKERNEL_NOTIFY_FD`` and ``PYKERNEL_RUN_DIR``.

Exceptions (under :class:`control.errors.ControlError`)::

    KernelError              the kernel cannot run this plan (exit 1)
     ├── KernelBusyError     another kernel runs the same system in the run directory (exit 7)
     └── PipeSetupError      a planned pipe cannot be created (exit 5)

Boot failures are :class:`pykernel._supervise.BootError` (exit 4).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from control.errors import ControlError
from control.plan import Plan, PlannedPipe, PlannedServer
from pykernel._executor import Executor, builtin_services
from pykernel._supervise import ExecutorStatus, ServiceSpec, ServiceState, ServiceStatus

__all__ = [
    "Kernel",
    "KernelBusyError",
    "KernelError",
    "PipeSetupError",
    "default_run_dir",
    "services_from_plan",
]

DEFAULT_READY_TIMEOUT = 10.0
DEFAULT_STOP_GRACE = 5.0


class KernelError(ControlError):
    """The kernel cannot run this plan."""


class KernelBusyError(KernelError):
    """Another kernel already runs this system with the same run directory."""

    exit_code = 7


class PipeSetupError(KernelError):
    """A planned pipe cannot be created (named, with the reason)."""

    exit_code = 5


def default_run_dir(system: str) -> Path:
    """Return where a system's logs and lock live by default.

    ``$XDG_RUNTIME_DIR/pykernel/<system>``, else ``/run/pykernel/<system>`` for root, else
    ``<tmp>/pykernel-<uid>/<system>``.
    """
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "pykernel" / system
    if os.geteuid() == 0 and os.access("/run", os.W_OK):
        return Path("/run/pykernel") / system
    return Path(tempfile.gettempdir()) / f"pykernel-{os.geteuid()}" / system


def services_from_plan(
    plan: Plan,
    *,
    python: str | None = None,
    ready_timeout: float = DEFAULT_READY_TIMEOUT,
    stop_grace: float = DEFAULT_STOP_GRACE,
    fork_python: bool = False,
) -> list[ServiceSpec]:
    """Translate the plan's servers into executor service specs, in start order.

    Args:
        plan: the plan.
        python: interpreter for python servers (default: this one).
        ready_timeout: seconds each server has to attach its terminals.
        stop_grace: seconds between SIGTERM and SIGKILL at shutdown.
        fork_python: start python servers by forking this (warm) process rather than
            exec'ing a new interpreter (see :mod:`pykernel._supervise_fork`).

    """
    by_name = {s.name: s for s in plan.servers}
    order = list(plan.start_order) + sorted(set(by_name) - set(plan.start_order))
    return [
        _service(by_name[name], python or sys.executable, ready_timeout, stop_grace, fork_python)
        for name in order
    ]


def _service(server: PlannedServer, python: str, ready_timeout: float,
             stop_grace: float, fork_python: bool) -> ServiceSpec:
    env = dict(server.env)
    if server.kind == "python":
        argv: tuple[str, ...] = (python, "-m", "pykernel.server", str(server.entry))
        env.setdefault("PYTHONUNBUFFERED", "1")  # the log shows output as it happens
    else:
        argv = tuple(server.argv)
    return ServiceSpec(
        name=server.name,
        argv=argv,
        env=env,
        cwd=server.cwd or None,
        restart=server.restart,
        backoff_initial=server.backoff_initial,
        backoff_max=server.backoff_max,
        depends_on=tuple(server.depends_on),
        ready_timeout=ready_timeout,
        stop_grace=stop_grace,
        fork_entry=server.entry if fork_python and server.kind == "python" else None,
    )


class Kernel:
    """Owns a system's pipes and its executor.

    Args:
        plan: the system to run.
        run_dir: logs and lock (default :func:`default_run_dir`).
        ready_timeout: seconds each server has to become ready.
        stop_grace: seconds between SIGTERM and SIGKILL per server.
        builtins: built-in services (default: the executor's list).
        python: interpreter for python servers.
        reap_all: reap every child, not only ours (default: when PID 1).
        fork_python: fork this process for python servers instead of exec'ing Python
            (fast: the imports are already done here).

    """

    def __init__(
        self,
        plan: Plan,
        *,
        run_dir: str | os.PathLike[str] | None = None,
        ready_timeout: float = DEFAULT_READY_TIMEOUT,
        stop_grace: float = DEFAULT_STOP_GRACE,
        builtins: Sequence[ServiceSpec] | None = None,
        python: str | None = None,
        reap_all: bool | None = None,
        fork_python: bool = False,
    ) -> None:
        self.plan = plan
        self.run_dir = Path(run_dir) if run_dir is not None else default_run_dir(plan.system)
        self._spec_args: dict[str, Any] = {"python": python, "ready_timeout": ready_timeout,
                                           "stop_grace": stop_grace, "fork_python": fork_python}
        self._ready_timeout, self._stop_grace = ready_timeout, stop_grace
        self._subscribers: list[Callable[[ServiceStatus, ServiceState], None]] = []
        self._pipes: dict[str, Any] = {}
        self._generations: dict[str, int] = {}
        self._lock_fd: int | None = None
        self._mutex = threading.Lock()
        self.executor = Executor(
            services_from_plan(plan, **self._spec_args),
            run_dir=self.run_dir,
            # housekeeping cleans only this system's stale pipes, never another's
            builtins=builtin_services(clean_prefix=f"{plan.system}.") if builtins is None
            else builtins,
            reap_all=reap_all,
            on_change=self._changed,
        )

    def subscribe(self, callback: Callable[[ServiceStatus, ServiceState], None]) -> None:
        """Call ``callback(status, previous_state)`` on every server state change."""
        self._subscribers.append(callback)

    def _changed(self, status: ServiceStatus, previous: ServiceState) -> None:
        for callback in list(self._subscribers):
            callback(status, previous)

    @property
    def pipe_names(self) -> tuple[str, ...]:
        """The names of the pipes this kernel created (while running)."""
        return tuple(self._pipes)

    def status(self) -> ExecutorStatus:
        """Return the executor's snapshot of every server."""
        return self.executor.status()

    def start(self) -> ExecutorStatus:
        """Lock, create the pipes, boot everything; undo all of it on failure.

        Raises:
            KernelBusyError: the system already runs from this run directory.
            PipeSetupError: a pipe cannot be created.
            BootError: a server failed to become ready.

        """
        with self._mutex:
            self.acquire()
            try:
                self._create_pipes()
                return self.executor.start()
            except BaseException:
                self.executor.shutdown()
                self._remove_pipes()
                self._release_lock()
                raise

    def stop(self, *, keep_lock: bool = False) -> ExecutorStatus:
        """Stop every server, then remove every pipe and release the lock (idempotent).

        Args:
            keep_lock: keep the run directory's lock (release it later with
                :meth:`release`, after cleaning up what else lives there).

        """
        final = self.executor.shutdown()
        with self._mutex:
            self._remove_pipes()
            if not keep_lock:
                self._release_lock()
        return final

    def release(self) -> None:
        """Release the run directory's lock (idempotent)."""
        with self._mutex:
            self._release_lock()

    # ------------------------------------------------------------------ modify actions
    # (control.surface.KernelActions: the control surface's start/stop/restart buttons)
    def start_server(self, name: str) -> None:
        """Start a stopped or failed server of the plan.

        Raises:
            KernelError: not a server of this plan.
            ExecutorError: the system is not running, or the server is not down.

        """
        self.executor.start_service(self._planned(name))

    def stop_server(self, name: str) -> None:
        """Stop a server (SIGTERM, grace, SIGKILL) without restarting it."""
        self.executor.stop_service(self._planned(name))

    def restart_server(self, name: str) -> None:
        """Stop a server if it runs, then start it."""
        self.executor.restart_service(self._planned(name))

    def connect(self, source: str, target: str) -> tuple[Any, Any]:
        """Connect ``source -> target`` in the running system (see :mod:`control.kernel_rewire`).

        Creates the pipe (or reuses the multiplexer's/combiner's pipe), restarts the servers
        at both ends with their new terminals, and waits until they run again.

        Args:
            source: ``server.terminal`` that writes.
            target: ``server.terminal`` that reads.

        Returns:
            ``(PlannedConnection, PlannedPipe)`` of the new connection.

        Raises:
            WiringError: lint's rules refuse the connection.
            KernelError: the system is not running, or the rewire failed (rolled back).

        """
        from control.state import SystemState
        from control.state_export import plan_connect

        with self._mutex:
            self._check_running(f"connect {source} -> {target}")
            new, conn, pipe = plan_connect(SystemState.from_plan(self.plan), source, target)
            self._rewire(new, f"connect {source} -> {target}")
            return conn, pipe

    def disconnect(self, connection_id: str) -> None:
        """Remove connection ``connection_id`` from the running system.

        Restarts the servers at both ends without the connection's terminals; the pipe is
        removed when no connection uses it any more.

        Raises:
            KernelError: no such connection, the system is not running, or the rewire
                failed (rolled back).
            WiringError: the removal leaves a required terminal unconnected.

        """
        from control.state import SystemState
        from control.state_export import plan_disconnect
        from control.state_model import UnknownSubject

        with self._mutex:
            self._check_running(f"disconnect {connection_id}")
            try:
                new = plan_disconnect(SystemState.from_plan(self.plan), connection_id)
            except UnknownSubject:
                raise KernelError(f"system {self.plan.system!r} has no connection "
                                  f"{connection_id!r}") from None
            self._rewire(new, f"disconnect {connection_id}")

    def _check_running(self, what: str) -> None:
        from pykernel._supervise import ExecutorPhase

        if self.executor.phase is not ExecutorPhase.RUNNING:
            raise KernelError(f"cannot {what}: system {self.plan.system!r} is "
                              f"{self.executor.phase.value}, not running")

    def _rewire(self, new: Plan, what: str) -> None:
        from control.kernel_rewire import carry_out
        from pykernel import PykernelError

        try:
            carry_out(self, new, self._pipes, stop_timeout=self._stop_grace + 5.0,
                      ready_timeout=self._ready_timeout + 5.0)
        except KernelError:
            raise
        except PykernelError as exc:
            raise KernelError(f"cannot {what}: {exc} (rolled back: nothing changed)") from exc

    # (control.kernel_rewire.RewireHost: what carry_out uses)
    def make_pipe(self, pipe: PlannedPipe) -> None:
        """Create planned ``pipe`` and hold it open while the kernel runs.

        Raises:
            PipeSetupError: it cannot be created (named, with the reason).

        """
        self._create_pipe(pipe)

    def pipe_generation(self, name: str) -> int:
        """Return how many times pipe ``name`` was created by this kernel (0: never).

        A reader of the pipe's counters that opened it by name reopens it when this
        changes (a rewire recreated the pipe under the same name).
        """
        return self._generations.get(name, 0)

    def drop_pipe(self, name: str) -> None:
        """Close and unlink pipe ``name`` if this kernel holds it."""
        from pykernel import Pipe, PipeNotFoundError

        pipe = self._pipes.pop(name, None)
        if pipe is not None:
            pipe.close()
            with contextlib.suppress(PipeNotFoundError):
                Pipe.unlink(name)

    def specs(self, plan: Plan) -> list[ServiceSpec]:
        """Return the executor specs of ``plan``'s servers (this kernel's settings)."""
        return services_from_plan(plan, **self._spec_args)

    def _planned(self, name: str) -> str:
        if not any(s.name == name for s in self.plan.servers):
            raise KernelError(f"system {self.plan.system!r} has no server {name!r}")
        return name

    def __enter__(self) -> Kernel:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def acquire(self) -> None:
        """Take the run directory's lock now (start() does it too); idempotent.

        Lets a caller claim the system before setting up things that share the run
        directory (the control surface's token), so a second kernel fails first.

        Raises:
            KernelBusyError: the system already runs from this run directory.
            KernelError: the run directory cannot be created.

        """
        if self._lock_fd is None:
            self._take_lock()

    # ------------------------------------------------------------------ internals
    def _take_lock(self) -> None:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.run_dir / "kernel.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                         0o600)
        except OSError as exc:
            raise KernelError(f"run directory {self.run_dir}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise KernelBusyError(
                f"system {self.plan.system!r} is already up (kernel pid {holder}, "
                f"run directory {self.run_dir})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.ftruncate(self._lock_fd, 0)
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None

    def _create_pipes(self) -> None:
        for planned in self.plan.pipes:
            self._create_pipe(planned)

    def _create_pipe(self, planned: PlannedPipe) -> None:
        from control.kernel_rewire import capacity
        from pykernel import Pipe, PipeExistsError, PykernelError

        # Fan pipes get spare places beyond the plan, so a run-time connect can reuse them.
        readers, writers = capacity(planned)
        create = functools.partial(
            Pipe.create, planned.name, slot_size=planned.slot_size, slots=planned.slots,
            shape=planned.shape, lossy=planned.lossy, max_readers=readers,
            max_writers=writers, mode=planned.mode,
        )
        try:
            try:
                pipe = create()
            except PipeExistsError:
                # Left over from a kernel that died? Remove it only if nobody uses it.
                _remove_if_stale(planned.name)
                pipe = create()
        except PipeExistsError:
            raise PipeSetupError(
                f"pipe {planned.name!r} exists and is in use: is system "
                f"{self.plan.system!r} running elsewhere? (`pykernel pipes` lists it)"
            ) from None
        except PykernelError as exc:
            raise PipeSetupError(f"cannot create pipe {planned.name!r}: {exc}") from exc
        self._pipes[planned.name] = pipe
        self._generations[planned.name] = self._generations.get(planned.name, 0) + 1

    def _remove_pipes(self) -> None:
        from pykernel import Pipe, PipeNotFoundError

        pipes, self._pipes = self._pipes, {}
        for name, pipe in pipes.items():
            pipe.close()
            with contextlib.suppress(PipeNotFoundError):
                Pipe.unlink(name)


def _remove_if_stale(name: str) -> None:
    """Unlink pipe ``name`` if all its processes are gone (other pipes are not touched)."""
    from pykernel import Pipe, PipeNotFoundError, list_pipes

    for info in list_pipes():
        if info.name == name and not info.in_use:
            with contextlib.suppress(PipeNotFoundError):
                Pipe.unlink(name)
