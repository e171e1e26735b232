"""Leases: how Hostess tells a live guest or holder from a dead one.

A lease is either tied to a process — its pid *and* its start time, so a recycled pid is not
mistaken for the original — or to a heartbeat that must be renewed before it expires.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from control.hostess.errors import InputError
from pykernel.liveness import process_start

MAX_TTL = 365 * 24 * 3600.0
"""Longest heartbeat lease, in seconds."""


@dataclass(frozen=True, slots=True)
class Lease:
    """What keeps a guest or an allocation alive.

    Attributes:
        pid: the process it is tied to, or None for a heartbeat lease.
        start: that process's start time (clock ticks since boot), with ``pid``.
        expires: the heartbeat deadline (Unix time), or None for a process lease.

    """

    pid: int | None = None
    start: int | None = None
    expires: float | None = None

    @classmethod
    def process(cls, pid: int | None = None) -> Lease:
        """Return a lease tied to process ``pid`` (default: this process).

        Raises:
            InputError: if ``pid`` is not a running process.

        """
        pid = os.getpid() if pid is None else pid
        if type(pid) is not int or pid <= 0:
            raise InputError("lease.pid", f"{pid!r} is not a positive integer")
        start = process_start(pid)
        if start is None:
            raise InputError("lease.pid", f"no running process {pid}")
        return cls(pid=pid, start=start)

    @classmethod
    def heartbeat(cls, ttl: float, now: float | None = None) -> Lease:
        """Return a lease that expires ``ttl`` seconds from ``now`` unless renewed.

        Raises:
            InputError: if ``ttl`` is not a positive number of seconds up to a year.

        """
        if type(ttl) not in (int, float) or not 0 < ttl <= MAX_TTL:
            raise InputError("lease.ttl", f"{ttl!r} must be seconds in (0, {MAX_TTL:.0f}]")
        return cls(expires=(time.time() if now is None else now) + ttl)

    def alive(self, now: float | None = None) -> bool:
        """Return whether the lease still holds."""
        if self.pid is not None:
            return process_start(self.pid) == self.start
        return self.expires is not None and self.expires > (time.time() if now is None else now)

    def to_dict(self) -> dict[str, object]:
        """Return the lease as JSON-ready data."""
        if self.pid is not None:
            return {"pid": self.pid, "start": self.start}
        return {"expires": self.expires}
