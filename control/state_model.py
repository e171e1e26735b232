"""Lifecycles as data: the states of the kernel, a server and a connection, and the moves.

Each :class:`Lifecycle` is a plain table — its states, its initial state and the set of legal
``(from, to)`` moves — so the HMI, the OpenAPI description and the tests read the same data
the state machine enforces. :meth:`Lifecycle.check` is the only gate: a move not in the table
raises :class:`IllegalTransition` and changes nothing.

Every accepted move becomes an :class:`Event` (time, subject, from, to, cause); the event log
itself lives in :mod:`control.state`.

Meaning of the states:

kernel
    ``booting`` (creating pipes, starting servers) → ``running`` (every server up) ⇄
    ``degraded`` (a server failed or backs off) → ``stopping`` → ``stopped``.
server
    ``declared`` (in the plan, never started) → ``starting`` (process launched) → ``ready``
    (all terminals attached) → ``running`` (seen working) ; ``backoff`` (exited, will restart
    after a delay), ``failed`` (exited, will not restart), ``stopped`` (stopped on purpose).
connection
    ``planned`` (in the plan, no pipe yet) → ``open`` (pipe exists, nothing moving) ⇄
    ``flowing`` (messages move) ⇄ ``stalled`` (messages wait but do not move: back-pressure
    or a reader that stopped reading); ``broken`` (an end's server is not running) → ``open``
    when it comes back; ``closed`` (disconnected; final).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from control.errors import ControlError


class StateError(ControlError):
    """Root of the state machine's errors."""


class IllegalTransition(StateError):
    """A move that is not in the lifecycle's table; nothing was changed.

    Attributes:
        kind: the lifecycle (``kernel``, ``server``, ``connection``).
        subject: the ID of the thing that was asked to move.
        current: its state, unchanged.
        target: the refused state.

    """

    def __init__(self, kind: str, subject: str, current: str, target: str) -> None:
        self.kind, self.subject, self.current, self.target = kind, subject, current, target
        super().__init__(
            f"{kind} {subject!r}: illegal transition {current} -> {target}"
        )


class UnknownSubject(StateError):
    """A server, terminal, pipe or connection ID that the state machine does not hold.

    Attributes:
        kind: what was looked up (``server``, ``connection``, ...).
        subject: the ID that was not found.

    """

    def __init__(self, kind: str, subject: str) -> None:
        self.kind, self.subject = kind, subject
        super().__init__(f"unknown {kind} {subject!r}")


@dataclass(frozen=True)
class Lifecycle:
    """The states of one kind of thing and the legal moves between them.

    Attributes:
        kind: ``kernel``, ``server`` or ``connection``.
        states: every state, in display order.
        initial: the state a new subject starts in.
        moves: legal ``(from, to)`` pairs; staying in the same state is never a move.
        final: states nothing leaves.

    """

    kind: str
    states: tuple[str, ...]
    initial: str
    moves: frozenset[tuple[str, str]]
    final: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        known = set(self.states)
        bad = [m for m in self.moves if m[0] not in known or m[1] not in known]
        if self.initial not in known or bad:
            raise ValueError(f"lifecycle {self.kind}: unknown state in {bad or self.initial}")

    def allows(self, current: str, target: str) -> bool:
        """Return whether ``current -> target`` is a legal move."""
        return (current, target) in self.moves

    def check(self, subject: str, current: str, target: str) -> None:
        """Raise :class:`IllegalTransition` unless ``current -> target`` is legal.

        Raises:
            IllegalTransition: the move is not in the table (or ``target`` is no state).

        """
        if not self.allows(current, target):
            raise IllegalTransition(self.kind, subject, current, target)

    def to_json(self) -> dict[str, Any]:
        """Return the table as JSON-able data (for the API and the HMI legend)."""
        return {
            "kind": self.kind,
            "states": list(self.states),
            "initial": self.initial,
            "final": sorted(self.final),
            "moves": sorted([a, b] for a, b in self.moves),
        }


def _moves(table: dict[str, tuple[str, ...]]) -> frozenset[tuple[str, str]]:
    return frozenset((src, dst) for src, dsts in table.items() for dst in dsts)


KERNEL = Lifecycle(
    kind="kernel",
    states=("booting", "running", "degraded", "stopping", "stopped"),
    initial="booting",
    moves=_moves({
        "booting": ("running", "degraded", "stopping"),
        "running": ("degraded", "stopping"),
        "degraded": ("running", "stopping"),
        "stopping": ("stopped",),
    }),
    final=frozenset({"stopped"}),
)

SERVER = Lifecycle(
    kind="server",
    states=("declared", "starting", "ready", "running", "backoff", "failed", "stopped"),
    initial="declared",
    moves=_moves({
        "declared": ("starting", "stopped"),
        "starting": ("ready", "running", "backoff", "failed", "stopped"),
        "ready": ("running", "backoff", "failed", "stopped"),
        "running": ("backoff", "failed", "stopped"),
        "backoff": ("starting", "failed", "stopped"),
        "failed": ("starting",),
        "stopped": ("starting",),
    }),
)

CONNECTION = Lifecycle(
    kind="connection",
    states=("planned", "open", "flowing", "stalled", "broken", "closed"),
    initial="planned",
    moves=_moves({
        "planned": ("open", "broken", "closed"),
        "open": ("flowing", "stalled", "broken", "closed"),
        "flowing": ("open", "stalled", "broken", "closed"),
        "stalled": ("open", "flowing", "broken", "closed"),
        "broken": ("open", "closed"),
    }),
    final=frozenset({"closed"}),
)

LIFECYCLES: dict[str, Lifecycle] = {lc.kind: lc for lc in (KERNEL, SERVER, CONNECTION)}

#: Server states in which its process is up (its pipe ends may move data).
SERVER_UP = frozenset({"starting", "ready", "running"})


@dataclass(frozen=True)
class Event:
    """One accepted transition (or structural change) with its time and cause.

    Attributes:
        seq: position in the event log, from 1, strictly increasing.
        time: wall-clock seconds since the epoch when it happened.
        kind: ``kernel``, ``server``, ``connection`` (a move) or ``connectome`` (a change of
            what exists).
        subject: the ID that moved (server name, connection ID, system name).
        source: the state before (empty for a structural change).
        target: the state after (or what happened, e.g. ``connected``).
        cause: why, in words (``executor: exit status 1``, ``api: stop``, ``flow: idle``).

    """

    seq: int
    time: float
    kind: str
    subject: str
    source: str
    target: str
    cause: str

    def to_json(self) -> dict[str, Any]:
        """Return the event as a JSON-able dict."""
        return {
            "seq": self.seq, "time": round(self.time, 6), "kind": self.kind,
            "subject": self.subject, "from": self.source, "to": self.target,
            "cause": self.cause,
        }


def now() -> float:
    """Return the wall-clock time events are stamped with."""
    return time.time()
