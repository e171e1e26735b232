r"""Service records for the executor: specs, states, status snapshots, errors, backoff.

This module holds the data the executor works with; :mod:`pykernel._executor` holds the
loop that acts on it. Nothing here knows about wiring files: a service is a command line
with an environment, a restart policy and the names of the services it depends on.

The readiness protocol (sd_notify style): the executor passes the write end of a pipe to
each service as ``PYKERNEL_NOTIFY_FD``. A service writes ``READY=1\n`` to it once it has
attached all its terminals; it may also write ``STATUS=<text>\n`` lines, shown in its
status. Closing the descriptor without ``READY=1`` is not readiness.

Exceptions::

    PykernelError
     └── ExecutorError        the executor refused or failed to do something
          ├── SpecError       an invalid service spec (service and field named)
          └── BootError       a service did not become ready at boot (log tail attached)
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from pykernel._errors import PykernelError

NOTIFY_ENV = "PYKERNEL_NOTIFY_FD"
RUN_DIR_ENV = "PYKERNEL_RUN_DIR"
KERNEL_PID_ENV = "PYKERNEL_KERNEL_PID"
_PR_SET_PDEATHSIG = 1
EX_CONFIG = 78
"""Exit status of a service whose configuration is wrong (``sysexits.h``): never restarted,
since retrying cannot fix it."""
READY_LINE = b"READY=1"
STATUS_PREFIX = b"STATUS="

RESTART_POLICIES = ("never", "on-failure", "always")
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_ENTRY_RE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


class ExecutorError(PykernelError):
    """The executor refused a request or could not carry it out."""


class SpecError(ExecutorError):
    """A service spec is invalid.

    Attributes:
        service: the service's name (as given).
        field: the offending field.

    """

    exit_code = 2

    def __init__(self, service: str, field: str, message: str) -> None:
        super().__init__(f"service {service!r}: {field}: {message}")
        self.service = service
        self.field = field


class BootError(ExecutorError):
    """A service failed to become ready while the executor booted the system.

    Everything already started has been stopped when this is raised.

    Attributes:
        service: the service that failed.
        reason: what happened (exit status, timeout, spawn error).
        log_path: its log file.
        log_tail: the last lines of its log, for the one-line CLI message's benefit.

    """

    exit_code = 4

    def __init__(self, service: str, reason: str, log_path: str, log_tail: str = "") -> None:
        text = f"boot failed: service {service!r} {reason} (log: {log_path})"
        last = log_tail.strip().splitlines()[-1:] if log_tail.strip() else []
        if last:
            text += f"; last log line: {last[0].strip()}"
        super().__init__(text)
        self.service = service
        self.reason = reason
        self.log_path = log_path
        self.log_tail = log_tail


class ServiceState(enum.StrEnum):
    """Where a service is in its life.

    ``pending`` (not started yet) → ``starting`` (process spawned, not yet ready) →
    ``ready`` (all terminals attached) → ``running`` (the whole system is up). An exit
    leads to ``backoff`` (a restart is scheduled), ``failed`` (no restart; it failed) or
    ``stopped`` (no restart; it ended cleanly or was stopped). ``stopping`` is the grace
    period between SIGTERM and the exit.
    """

    PENDING = "pending"
    STARTING = "starting"
    READY = "ready"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    FAILED = "failed"
    STOPPED = "stopped"

    @property
    def alive(self) -> bool:
        """True while a process exists for the service."""
        return self in (
            ServiceState.STARTING,
            ServiceState.READY,
            ServiceState.RUNNING,
            ServiceState.STOPPING,
        )

    @property
    def up(self) -> bool:
        """True once the service is ready (its dependents may start)."""
        return self in (ServiceState.READY, ServiceState.RUNNING)

    @property
    def final(self) -> bool:
        """True when nothing more will happen to the service without a new request."""
        return self in (ServiceState.FAILED, ServiceState.STOPPED)


@dataclass(frozen=True)
class ServiceSpec:
    """How to run one service.

    Attributes:
        name: unique name, ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}``; also the log file's stem.
        argv: the command line; ``argv[0]`` is looked up in ``PATH``.
        env: variables added to the executor's own environment.
        cwd: working directory (default: the executor's).
        restart: ``never``, ``on-failure`` (non-zero exit or killed) or ``always``.
        backoff_initial: seconds before the first restart; doubles per consecutive failure.
        backoff_max: cap of the restart delay; a service that stayed up this long has its
            backoff reset.
        depends_on: services that must be ready before this one starts (and that stop
            only after this one has stopped).
        notify: wait for ``READY=1`` on ``PYKERNEL_NOTIFY_FD``; if false, the service is
            ready as soon as its process exists.
        ready_timeout: seconds from spawn to ``READY=1`` before it counts as a failure.
        stop_grace: seconds between SIGTERM and SIGKILL at shutdown.
        fork_entry: for a Python server, its ``module:callable``: the executor then forks
            its own (already warm) process and runs the entry in the child instead of
            exec'ing ``argv`` (see :mod:`pykernel._supervise_fork`); ``argv`` stays the
            equivalent command line, shown in the log.

    """

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    restart: str = "on-failure"
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    depends_on: tuple[str, ...] = ()
    notify: bool = True
    ready_timeout: float = 10.0
    stop_grace: float = 5.0
    fork_entry: str | None = None

    def __post_init__(self) -> None:
        """Normalise sequences to tuples and validate every field."""
        object.__setattr__(self, "argv", tuple(self.argv))
        object.__setattr__(self, "depends_on", tuple(self.depends_on))
        object.__setattr__(self, "env", dict(sorted(dict(self.env).items())))
        self.validate()

    def validate(self) -> None:
        """Check every field.

        Raises:
            SpecError: naming the service and the field.

        """
        name = self.name
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise SpecError(str(name), "name", "must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
        if not self.argv or not all(isinstance(a, str) and "\0" not in a for a in self.argv):
            raise SpecError(name, "argv", "must be a non-empty list of strings without NUL")
        if not self.argv[0]:
            raise SpecError(name, "argv[0]", "must not be empty")
        for key, value in self.env.items():
            if not isinstance(key, str) or not key or "=" in key or "\0" in key:
                raise SpecError(name, "env", f"invalid variable name {key!r}")
            if not isinstance(value, str) or "\0" in value:
                raise SpecError(name, f"env.{key}", "value must be a string without NUL")
        if self.restart not in RESTART_POLICIES:
            raise SpecError(
                name, "restart", f"{self.restart!r} is not one of {', '.join(RESTART_POLICIES)}"
            )
        for fname in ("backoff_initial", "backoff_max", "ready_timeout", "stop_grace"):
            value = getattr(self, fname)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise SpecError(name, fname, f"must be a number of seconds, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise SpecError(name, fname, f"must be finite and >= 0, got {value!r}")
        if self.backoff_max < self.backoff_initial:
            raise SpecError(name, "backoff_max", "must be >= backoff_initial")
        if self.ready_timeout <= 0:
            raise SpecError(name, "ready_timeout", "must be > 0")
        for dep in self.depends_on:
            if not isinstance(dep, str) or not dep:
                raise SpecError(name, "depends_on", f"invalid service name {dep!r}")
            if dep == name:
                raise SpecError(name, "depends_on", "a service cannot depend on itself")
        if len(set(self.depends_on)) != len(self.depends_on):
            raise SpecError(name, "depends_on", "lists a service twice")
        if self.fork_entry is not None and (
            not isinstance(self.fork_entry, str) or not _ENTRY_RE.fullmatch(self.fork_entry)
        ):
            raise SpecError(name, "fork_entry", f"expected 'module:callable', got "
                                                f"{self.fork_entry!r}")


@dataclass(frozen=True)
class ServiceStatus:
    """A snapshot of one service.

    Attributes:
        name: the service.
        state: its current state.
        pid: its process id while a process exists, else None.
        builtin: True for the executor's own built-in services.
        starts: how many times a process was spawned.
        restarts: how many of those spawns were restarts.
        last_exit: exit code of the last process (negative: killed by that signal).
        reason: why it is in this state, in words (empty when self-evident).
        detail: the last ``STATUS=`` line the service sent.
        backoff: the delay (s) chosen for the pending restart (in ``backoff``), else 0.
        since: wall-clock time (``time.time()``) of the last state change.
        log_path: the per-service log file.
        killed: its last stop needed SIGKILL (it outlived its grace period).

    """

    name: str
    state: ServiceState
    pid: int | None
    builtin: bool
    starts: int
    restarts: int
    last_exit: int | None
    reason: str
    detail: str
    backoff: float
    since: float
    log_path: str
    killed: bool = False

    def to_dict(self) -> dict[str, object]:
        """Return a JSON-ready dict (the state as its string value)."""
        return {
            "name": self.name,
            "state": self.state.value,
            "pid": self.pid,
            "builtin": self.builtin,
            "starts": self.starts,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "reason": self.reason,
            "detail": self.detail,
            "backoff": self.backoff,
            "since": self.since,
            "log_path": self.log_path,
            "killed": self.killed,
        }


class ExecutorPhase(enum.StrEnum):
    """Where the executor as a whole is."""

    IDLE = "idle"
    BOOTING = "booting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass(frozen=True)
class ExecutorStatus:
    """A snapshot of the executor.

    Attributes:
        phase: the executor's phase.
        services: every service (built-ins first), in start order.
        orphans_reaped: processes reaped that were not ours (only when reaping all, as PID 1).
        run_dir: where the logs are.

    """

    phase: ExecutorPhase
    services: tuple[ServiceStatus, ...]
    orphans_reaped: int
    run_dir: str

    def service(self, name: str) -> ServiceStatus:
        """Return the status of service ``name``.

        Raises:
            KeyError: no such service.

        """
        for status in self.services:
            if status.name == name:
                return status
        raise KeyError(name)

    def to_dict(self) -> dict[str, object]:
        """Return a JSON-ready dict."""
        return {
            "phase": self.phase.value,
            "services": [s.to_dict() for s in self.services],
            "orphans_reaped": self.orphans_reaped,
            "run_dir": self.run_dir,
        }


def backoff_delay(initial: float, cap: float, failures: int) -> float:
    """Return the restart delay after ``failures`` consecutive failures (1 = the first).

    ``initial * 2**(failures-1)``, capped at ``cap``.
    """
    if failures <= 1:
        return min(initial, cap)
    # Exponent capped so huge failure counts cannot overflow the float.
    return min(cap, initial * 2.0 ** min(failures - 1, 60))


def should_restart(policy: str, exit_code: int) -> bool:
    """Return True when ``policy`` restarts a process that ended with ``exit_code``.

    :data:`EX_CONFIG` (78, a configuration error) is never restarted, whatever the policy.
    """
    if exit_code == EX_CONFIG:
        return False
    if policy == "always":
        return True
    if policy == "on-failure":
        return exit_code != 0
    return False


def describe_exit(code: int) -> str:
    """Return ``exit code N`` or ``killed by SIGX`` for a waitstatus-derived exit code."""
    if code == EX_CONFIG:
        return f"exit code {code} (EX_CONFIG: configuration error, not restarted)"
    if code >= 0:
        return f"exit code {code}"
    import signal

    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


def parse_notify(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Split notify-pipe bytes into complete lines and the unfinished remainder."""
    *lines, rest = buffer.split(b"\n")
    return [line.strip() for line in lines if line.strip()], rest


def die_with_kernel(environ: Mapping[str, str] | None = None) -> bool:
    """Ask Linux to SIGTERM this process when the kernel that started it dies.

    A server whose kernel was SIGKILLed would otherwise run on, holding its pipes. Called
    by the server runtime (and forked servers) when ``PYKERNEL_KERNEL_PID`` is set; if the
    kernel is already gone, this process gets SIGTERM at once.

    Returns:
        True when the request was made.

    """
    import ctypes
    import os
    import signal

    env = os.environ if environ is None else environ
    try:
        kernel = int(env.get(KERNEL_PID_ENV, ""))
    except ValueError:
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != kernel:  # it died before the request was made
        os.kill(os.getpid(), signal.SIGTERM)
    return True
