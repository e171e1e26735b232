"""The candidate cache: neighbors whose probe and beacon succeeded, until they expire.

A candidate is dropped when it expires, when its neighbor changes what it advertises or
goes away, or when a later probe or beacon fails. Changes are reported through a
:class:`CandidateListener` (how Hostess learns of them), called outside the cache lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from discovery._errors import StateFileError
from discovery.hints import Hints
from discovery.probe import ProbeResult

log = logging.getLogger(__name__)

DEFAULT_TTL = 300.0


@dataclass(frozen=True)
class Candidate:
    """A vetted neighbor: its hints are confirmed by the beacon."""

    iface: str
    chassis: str
    port: str
    identity: str
    """The identity the beacon proved (equal to the one its hints claimed)."""
    address: str
    """The management address probe and beacon reached."""
    hints: Hints
    probes: tuple[ProbeResult, ...]
    beacon_transport: str
    beacon_rtt_s: float
    verified_at: float
    """Wall-clock time of the successful beacon."""
    expires_at: float
    """Wall-clock time after which it must be vetted again."""

    @property
    def key(self) -> tuple[str, str, str]:
        """The neighbor key: (interface, chassis, port)."""
        return (self.iface, self.chassis, self.port)

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "iface": self.iface, "chassis": self.chassis, "port": self.port,
            "identity": self.identity, "address": self.address,
            "hints": self.hints.to_json(), "probes": [p.to_json() for p in self.probes],
            "beacon_transport": self.beacon_transport, "beacon_rtt_s": self.beacon_rtt_s,
            "verified_at": self.verified_at, "expires_at": self.expires_at,
        }  # fmt: skip

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Candidate:
        """Rebuild a candidate from :meth:`to_json` output.

        Raises:
            StateFileError: a field missing or of the wrong type.

        """
        try:
            h = d["hints"]
            hints = Hints(
                identity=h["identity"], control_port=h["control_port"],
                beacon_port=h["beacon_port"], echo_port=h["echo_port"],
                transports=tuple(h["transports"]), host_token=bytes.fromhex(h["host_token"]),
                shm_name=h["shm_name"],
            )  # fmt: skip
            probes = tuple(ProbeResult(**p) for p in d["probes"])
            return cls(
                iface=str(d["iface"]), chassis=str(d["chassis"]), port=str(d["port"]),
                identity=str(d["identity"]), address=str(d["address"]), hints=hints,
                probes=probes, beacon_transport=str(d["beacon_transport"]),
                beacon_rtt_s=float(d["beacon_rtt_s"]), verified_at=float(d["verified_at"]),
                expires_at=float(d["expires_at"]),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StateFileError(f"candidate record malformed: {exc!r}") from None


class CandidateListener(Protocol):
    """The narrow interface through which the cache reports (e.g. to Hostess)."""

    def candidate_added(self, candidate: Candidate) -> None:
        """Report a neighbor that passed probe and beacon (or passed again)."""

    def candidate_dropped(self, candidate: Candidate, reason: str) -> None:
        """Report a candidate gone: expired, neighbor changed/removed, or vetting failed."""


@dataclass(frozen=True)
class Failure:
    """The last failed vetting of a neighbor (kept so operators can see why)."""

    iface: str
    chassis: str
    port: str
    stage: str
    """``no-address``, ``probe`` or ``beacon``."""
    detail: str
    at: float

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return dict(self.__dict__)


class CandidateCache:
    """Thread-safe cache of candidates keyed by neighbor key.

    Args:
        listener: told about additions and drops.
        clock: wall-clock source.

    """

    def __init__(
        self,
        *,
        listener: CandidateListener | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._listener = listener
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str, str], Candidate] = {}
        self._failures: dict[tuple[str, str, str], Failure] = {}
        self.version = 0
        """Bumped on every change (for state-file writers)."""

    def put(self, candidate: Candidate) -> None:
        """Add or refresh a candidate (clears any recorded failure for its neighbor)."""
        with self._lock:
            self._entries[candidate.key] = candidate
            self._failures.pop(candidate.key, None)
            self.version += 1
        self._tell("added", candidate, "")

    def fail(self, key: tuple[str, str, str], stage: str, detail: str) -> None:
        """Record a failed vetting; drops the candidate for ``key`` if there was one."""
        with self._lock:
            self._failures[key] = Failure(*key, stage, detail, self._clock())
            self.version += 1
        self.drop(key, f"{stage}-failed")

    def drop(self, key: tuple[str, str, str], reason: str) -> Candidate | None:
        """Remove the candidate for ``key``; return it (None if there was none)."""
        with self._lock:
            gone = self._entries.pop(key, None)
            if reason in ("shutdown", "expired", "interface-down"):
                self._failures.pop(key, None)  # the neighbor itself is gone
            if gone is not None or reason:
                self.version += 1
        if gone is not None:
            self._tell("dropped", gone, reason)
        return gone

    def expire(self) -> list[Candidate]:
        """Drop every candidate past its expiry; return them."""
        now = self._clock()
        with self._lock:
            gone = [c for c in self._entries.values() if c.expires_at <= now]
            for c in gone:
                del self._entries[c.key]
            if gone:
                self.version += 1
        for c in gone:
            self._tell("dropped", c, "expired")
        return gone

    def get(self, key: tuple[str, str, str]) -> Candidate | None:
        """Return the live candidate for ``key``, if any."""
        with self._lock:
            c = self._entries.get(key)
        return c if c is not None and c.expires_at > self._clock() else None

    def candidates(self) -> list[Candidate]:
        """Return the live candidates (expiring first), sorted by key."""
        self.expire()
        with self._lock:
            return sorted(self._entries.values(), key=lambda c: c.key)

    def failures(self) -> list[Failure]:
        """Return the last failure of each neighbor that is not a candidate now."""
        with self._lock:
            return sorted(self._failures.values(), key=lambda f: (f.iface, f.chassis, f.port))

    def _tell(self, kind: str, c: Candidate, reason: str) -> None:
        if self._listener is None:
            return
        try:
            if kind == "added":
                self._listener.candidate_added(c)
            else:
                self._listener.candidate_dropped(c, reason)
        except Exception:  # the listener's bug is its own
            log.exception("candidate listener failed on %s", kind)
