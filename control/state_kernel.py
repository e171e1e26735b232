"""Glue between a running kernel and the state machine, sampler and control surface.

:class:`LiveSystem` is what ``pykernel up`` wraps around a :class:`control.kernel.Kernel`::

    live = LiveSystem(kernel, host="127.0.0.1", port=0).start()   # surface up: "booting"
    try:
        kernel.start()
        live.booted()                                             # kernel "running"
        ...                                                       # until signalled
    finally:
        live.stopping()
        kernel.stop()
        live.stop()                                               # kernel "stopped"

It builds the :class:`~control.state.SystemState` from the kernel's plan, feeds it every
executor state change (:class:`ExecutorFeed`), samples the pipes (:class:`FlowSampler`),
and serves it (:class:`~control.surface.Surface`, token and ``surface.json`` in the kernel's
run directory). Modifies go to the kernel, which implements
:class:`~control.surface.KernelActions` (a kernel that does not leaves the surface read-only:
409 on modify).
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

from control.state import SystemState
from control.state_flow import FlowSampler
from control.state_model import SERVER, IllegalTransition, UnknownSubject
from control.surface import KernelActions, Surface

__all__ = ["SERVICE_TO_SERVER", "ExecutorFeed", "LiveSystem"]

SERVICE_TO_SERVER: dict[str, str | None] = {
    "pending": None, "starting": "starting", "ready": "ready", "running": "running",
    "backoff": "backoff", "stopping": None, "failed": "failed", "stopped": "stopped",
}
"""Executor service state → server state (None: no move; ``stopping`` is a grace period)."""


class ExecutorFeed:
    """An executor subscriber that moves the servers of a :class:`SystemState`.

    Built-in services (not in the plan) are ignored. The first server that starts means the
    kernel has created its pipes, so planned connections become ``open``. A move the server
    lifecycle does not allow (the executor skipped a state we track) is bridged through
    ``starting`` when that makes it legal, else counted in :attr:`refused` and dropped, so
    a mismatch never breaks the executor's loop.

    Args:
        state: the state machine to feed.

    """

    def __init__(self, state: SystemState) -> None:
        self.state = state
        self.refused = 0
        self._opened = False

    def __call__(self, status: Any, previous: Any) -> None:
        """Take one executor change: ``status`` (a ServiceStatus) and its previous state."""
        target = SERVICE_TO_SERVER.get(str(getattr(status.state, "value", status.state)))
        if target is None:
            return
        if not self._opened and target == "starting":
            self._opened = True
            self.state.open_pipes("kernel: pipes created")
        cause = f"executor: {status.reason}" if getattr(status, "reason", "") else (
            f"executor: {previous} -> {status.state}")
        try:
            current = self.state.server_json(status.name)["state"]
        except UnknownSubject:
            return  # a built-in
        try:
            if not SERVER.allows(current, target) and SERVER.allows(current, "starting") \
                    and SERVER.allows("starting", target):
                self.state.server_to(status.name, "starting", cause, pid=status.pid)
            self.state.server_to(status.name, target, cause, pid=status.pid)
        except IllegalTransition:
            self.refused += 1


class _FollowedPipe:
    """The sampler's own mapping of a kernel's pipe, reopened when a rewire recreates it.

    The sampler maps each pipe itself (its counters are read while the kernel may close
    its handle); a pipe recreated under the same name bumps the kernel's
    ``pipe_generation``, and the next ``stats()`` maps the new one.
    """

    def __init__(self, kernel: Any, name: str) -> None:
        from pykernel import Pipe

        self._kernel, self._name, self._open = kernel, name, Pipe.open
        self._generation = kernel.pipe_generation(name)
        self._pipe = Pipe.open(name)

    def stats(self) -> Any:
        """Return the current pipe's statistics (reopening it if it was recreated)."""
        generation = self._kernel.pipe_generation(self._name)
        if generation != self._generation:
            fresh = self._open(self._name)  # raises while the new one is not there yet
            self._pipe.close()
            self._pipe, self._generation = fresh, generation
        return self._pipe.stats()

    def close(self) -> None:
        """Unmap the pipe."""
        self._pipe.close()


class LiveSystem:
    """The state machine, flow sampler and control surface of one kernel.

    Args:
        kernel: a :class:`control.kernel.Kernel` (``plan``, ``run_dir``, ``subscribe``).
        host: address the surface binds (127.0.0.1 by default).
        port: its port (0: any free one).
        interval: seconds between flow samples.

    """

    def __init__(self, kernel: Any, *, host: str = "127.0.0.1", port: int = 0,
                 interval: float = 0.25) -> None:
        self.kernel = kernel
        self.state = SystemState.from_plan(kernel.plan)
        self.feed = ExecutorFeed(self.state)
        kernel.subscribe(self.feed)
        opener = functools.partial(_FollowedPipe, kernel) if hasattr(
            kernel, "pipe_generation") else None
        self.sampler = (FlowSampler(self.state, interval=interval, opener=opener) if opener
                        else FlowSampler(self.state, interval=interval))
        actions = kernel if isinstance(kernel, KernelActions) else None
        self.surface = Surface(self.state, actions, run_dir=kernel.run_dir, host=host,
                               port=port)

    @property
    def url(self) -> str:
        """The control surface's URL (the HMI page is its root)."""
        return self.surface.url

    def start(self) -> LiveSystem:
        """Serve the surface and start sampling (before the kernel starts: ``booting``)."""
        self.surface.start()
        self.sampler.start()
        return self

    def booted(self) -> None:
        """Mark the kernel ``running`` (or ``degraded`` if a server already failed)."""
        self.state.open_pipes("kernel: pipes created")
        unhealthy = any(s["state"] in ("failed", "backoff") for s in self.state.servers_json())
        self.state.kernel_to("degraded" if unhealthy else "running", "kernel: boot complete")

    def stopping(self, cause: str = "kernel: shutdown requested") -> None:
        """Mark the kernel ``stopping`` (idempotent)."""
        with contextlib.suppress(IllegalTransition):
            self.state.kernel_to("stopping", cause)

    def stop(self) -> None:
        """Mark the kernel ``stopped``, stop sampling and serving."""
        self.stopping()
        with contextlib.suppress(IllegalTransition):
            self.state.kernel_to("stopped", "kernel: all servers stopped, pipes removed")
        self.sampler.stop()
        self.surface.stop()

    def __enter__(self) -> LiveSystem:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
