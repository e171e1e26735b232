"""Run-time rewiring: what a new plan of the running system changes, and carrying it out.

A connect or disconnect re-plans the running system (:mod:`control.state_export`); this
module compares that plan with the one the kernel runs and carries the difference out:

1. create the pipes the new plan adds (a multiplexer or combiner pipe that gains a peer is
   reused when it has a free place: the kernel creates fan pipes with
   :data:`SPARE_PLACES` spare reader/writer places, so the plan itself is unchanged);
2. stop the servers whose terminal set changes (a server reads ``PYKERNEL_TERMINALS`` only
   when it starts, so **rewiring restarts the servers at both ends**) and every user of a
   pipe that must be recreated (a different geometry, or no free place left);
3. recreate those pipes, give every server its new spec (new ``PYKERNEL_TERMINALS`` and
   ``PYKERNEL_CONNECTOME``; servers that are not restarted get it at their next start);
4. start the stopped servers again and wait until each is running;
5. remove the pipes the new plan no longer uses.

A step that fails rolls everything back to the old plan (the old specs, the old pipes,
the servers restarted on them) and raises :class:`RewireError`: a refused or failed
rewire changes nothing. Servers an operator stopped stay stopped (they get the new spec).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from control.errors import ControlError
from control.plan import Plan, PlannedPipe
from pykernel._supervise import ExecutorStatus, ServiceSpec, ServiceState

__all__ = ["SPARE_PLACES", "RewireError", "RewireSteps", "capacity", "carry_out", "steps"]

SPARE_PLACES = 8
"""Spare reader places of a multiplexer pipe (writer places of a combiner) the kernel
creates beyond the plan, so a run-time connect can reuse the pipe (they cost no memory)."""
_DOWN = (ServiceState.STOPPED, ServiceState.FAILED)


class RewireError(ControlError):
    """A run-time connect or disconnect could not be carried out; nothing was changed."""


def capacity(pipe: PlannedPipe) -> tuple[int, int]:
    """Return the ``(max_readers, max_writers)`` the kernel creates planned ``pipe`` with."""
    if pipe.shape == "multiplexer":
        return pipe.max_readers + SPARE_PLACES, 1
    if pipe.shape == "combiner":
        return 1, pipe.max_writers + SPARE_PLACES
    return 1, 1


@dataclass(frozen=True)
class RewireSteps:
    """What moving from one plan to the next changes.

    Attributes:
        added: pipes to create.
        replaced: pipes to recreate (their geometry changed, or they have no free place).
        removed: names of pipes no longer used.
        restart: servers whose terminals change or that use a replaced pipe (start order).

    """

    added: tuple[PlannedPipe, ...]
    replaced: tuple[PlannedPipe, ...]
    removed: tuple[str, ...]
    restart: tuple[str, ...]


def _fits(handle: Any, pipe: PlannedPipe) -> bool:
    """Return whether the existing pipe ``handle`` can carry planned ``pipe`` as it is."""
    return (handle.slot_size, handle.slots, handle.shape, handle.lossy) == (
        pipe.slot_size, pipe.slots, pipe.shape, pipe.lossy
    ) and handle.max_readers >= pipe.max_readers and handle.max_writers >= pipe.max_writers


def _users(plan: Plan, pipe: str) -> set[str]:
    return {s.name for s in plan.servers if any(b.pipe == pipe for b in s.terminals.values())}


def steps(old: Plan, new: Plan, pipes: dict[str, Any]) -> RewireSteps:
    """Compare the running plan ``old`` with ``new``, given the kernel's pipe handles."""
    added = tuple(p for p in new.pipes if p.name not in pipes)
    replaced = tuple(p for p in new.pipes if p.name in pipes and not _fits(pipes[p.name], p))
    kept = {p.name for p in new.pipes}
    removed = tuple(sorted(name for name in pipes if name not in kept))
    before = {s.name: s.terminals for s in old.servers}
    restart = {s.name for s in new.servers if s.terminals != before.get(s.name)}
    for pipe in replaced:
        restart |= _users(old, pipe.name) | _users(new, pipe.name)
    order = [n for n in new.start_order if n in restart]
    return RewireSteps(added, replaced, removed, tuple(order + sorted(restart - set(order))))


class RewireHost(Protocol):
    """What :func:`carry_out` needs of the kernel."""

    executor: Any
    plan: Plan

    def make_pipe(self, pipe: PlannedPipe) -> None:
        """Create planned ``pipe`` and hold it open (raises PipeSetupError)."""

    def drop_pipe(self, name: str) -> None:
        """Close and unlink pipe ``name`` (nothing if the kernel does not hold it)."""

    def specs(self, plan: Plan) -> list[ServiceSpec]:
        """Return the executor specs of ``plan``'s servers."""


def _wait(host: RewireHost, names: Iterable[str], done: Callable[[Any], bool],
          bad: Callable[[Any], bool], timeout: float, what: str) -> None:
    """Wait until ``done`` holds for every named service; raise if one is ``bad``."""
    names = set(names)
    trouble: list[str] = []

    def check(status: ExecutorStatus) -> bool:
        mine = [s for s in status.services if s.name in names]
        trouble[:] = [f"{s.name} {s.state.value}: {s.reason}" for s in mine if bad(s)]
        return bool(trouble) or all(done(s) for s in mine)

    status = host.executor.wait_for(check, timeout)
    if status is None:
        late = sorted(s.name for s in host.executor.status().services
                      if s.name in names and not done(s))
        raise RewireError(f"{', '.join(late)} did not {what} within {timeout:g} s")
    if trouble:
        raise RewireError("; ".join(trouble))


def _stop(host: RewireHost, names: list[str], timeout: float) -> None:
    for name in names:
        host.executor.stop_service(name)
    _wait(host, names, lambda s: s.state in _DOWN, lambda s: False, timeout, "stop")


def _start(host: RewireHost, names: list[str], timeout: float) -> None:
    before = {s.name: s.starts for s in host.executor.status().services}
    for name in names:
        host.executor.start_service(name)
    _wait(host, names,
          lambda s: s.state is ServiceState.RUNNING and s.starts > before[s.name],
          lambda s: s.starts > before[s.name] and s.state in (*_DOWN, ServiceState.BACKOFF),
          timeout, "become ready")


def _respec(host: RewireHost, plan: Plan) -> None:
    for spec in host.specs(plan):
        host.executor.replace_spec(spec)


def carry_out(host: RewireHost, new: Plan, pipes: dict[str, Any], *, stop_timeout: float,
              ready_timeout: float) -> RewireSteps:
    """Move the running kernel from ``host.plan`` to ``new`` (see the module docstring).

    Args:
        host: the kernel.
        new: the plan to run.
        pipes: the kernel's pipe handles by name (to compare geometries).
        stop_timeout: seconds the restarted servers have to stop.
        ready_timeout: seconds they have to be running again.

    Returns:
        The steps taken.

    Raises:
        RewireError: a server did not stop or start again; the old plan runs again.
        PykernelError: a pipe cannot be created (PipeSetupError) or the executor refused
            (ExecutorError); the old plan runs again.

    """
    old = host.plan
    todo = steps(old, new, pipes)
    up = {s.name for s in host.executor.status().services if s.state not in _DOWN}
    bounce = [n for n in todo.restart if n in up]
    made: list[str] = []
    stopping = False
    try:
        for pipe in todo.added:
            host.make_pipe(pipe)
            made.append(pipe.name)
        stopping = True
        _stop(host, bounce, stop_timeout)
        for pipe in todo.replaced:
            host.drop_pipe(pipe.name)
            host.make_pipe(pipe)
        _respec(host, new)
        _start(host, bounce, ready_timeout)
    except BaseException:
        if stopping:
            _roll_back(host, old, todo, bounce, stop_timeout, ready_timeout)
        for name in made:
            with contextlib.suppress(Exception):
                host.drop_pipe(name)
        raise
    for name in todo.removed:
        host.drop_pipe(name)
    host.plan = new
    return todo


def _roll_back(host: RewireHost, old: Plan, todo: RewireSteps, bounce: list[str],
               stop_timeout: float, ready_timeout: float) -> None:
    """Put the old specs and replaced pipes back and start the bounced servers on them."""
    with contextlib.suppress(Exception):
        _stop(host, bounce, stop_timeout)
    with contextlib.suppress(Exception):
        _respec(host, old)
    by_name = {p.name: p for p in old.pipes}
    for pipe in todo.replaced:
        with contextlib.suppress(Exception):
            host.drop_pipe(pipe.name)
            host.make_pipe(by_name[pipe.name])
    with contextlib.suppress(Exception):
        _start(host, bounce, ready_timeout)
