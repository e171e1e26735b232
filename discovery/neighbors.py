"""The neighbor table: who LLDP says is on each link, until their TTL runs out.

Keyed by (local interface, chassis ID, port ID). A frame with TTL 0 (shutdown) removes
its neighbor at once; others expire TTL seconds after the last frame. Each interface holds
at most ``per_interface_cap`` neighbors (new ones beyond are refused and counted). Our own
frames (our chassis ID or one of our MACs) are ignored. Every frame is counted: accepted,
rejected by reason, own; reserved TLVs and unknown organizational TLVs are counted as
unrecognized. :meth:`NeighborTable.ingest` never raises: a bad frame is a counter, not a
crash.

Changes are reported through a :class:`NeighborListener`, called outside the table lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from typing import Protocol

from discovery._errors import FrameError, HintsError
from discovery.hints import Hints, decode_hints, is_hints_tlv
from discovery.tlv import Lldpdu, mac_text, parse_frame

log = logging.getLogger(__name__)

DEFAULT_CAP = 64


@dataclass(frozen=True)
class Neighbor:
    """One neighbor as last heard. Every field but the times is untrusted peer input."""

    iface: str
    """Local interface the frames arrive on."""
    chassis: str
    """Chassis ID as text (MAC, address, or printable string)."""
    port: str
    """Port ID as text."""
    ttl: int
    """TTL of the last frame, in seconds."""
    first_seen: float
    """Wall-clock time of the first frame."""
    last_seen: float
    """Wall-clock time of the last frame."""
    source_mac: str
    """Source MAC of the last frame."""
    system_name: str | None = None
    system_description: str | None = None
    port_description: str | None = None
    management_addresses: tuple[str, ...] = ()
    """Management addresses as text (IPv4/IPv6/MAC/hex)."""
    hints: Hints | None = None
    """pykernel's hints, when the neighbor is a pykernel kernel (untrusted until beacon)."""
    hints_error: str | None = None
    """Why a hints TLV present in the frame was refused."""

    @property
    def key(self) -> tuple[str, str, str]:
        """The table key: (interface, chassis, port)."""
        return (self.iface, self.chassis, self.port)

    @property
    def expires_at(self) -> float:
        """Wall-clock time at which this entry is forgotten."""
        return self.last_seen + self.ttl

    def advertisement(self) -> tuple[object, ...]:
        """Return what the neighbor says, without times: equal tuples mean "no change"."""
        return (
            self.source_mac, self.system_name, self.system_description, self.port_description,
            self.management_addresses, self.hints, self.hints_error,
        )  # fmt: skip

    def to_json(self) -> dict[str, object]:
        """Return a JSON-ready dict."""
        return {
            "iface": self.iface,
            "chassis": self.chassis,
            "port": self.port,
            "ttl": self.ttl,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "expires_at": self.expires_at,
            "source_mac": self.source_mac,
            "system_name": self.system_name,
            "system_description": self.system_description,
            "port_description": self.port_description,
            "management_addresses": list(self.management_addresses),
            "hints": self.hints.to_json() if self.hints else None,
            "hints_error": self.hints_error,
        }


class NeighborListener(Protocol):
    """The narrow interface through which the table reports changes."""

    def neighbor_added(self, neighbor: Neighbor) -> None:
        """Report a neighbor heard for the first time."""

    def neighbor_changed(self, old: Neighbor, new: Neighbor) -> None:
        """Report a known neighbor that now advertises something different."""

    def neighbor_removed(self, neighbor: Neighbor, reason: str) -> None:
        """Report a neighbor gone: ``expired``, ``shutdown`` (TTL 0) or ``interface-down``."""


@dataclass(frozen=True)
class TableStats:
    """Counters of everything the table was handed."""

    frames: int = 0
    """Frames handed to :meth:`NeighborTable.ingest`."""
    accepted: int = 0
    """Frames that refreshed, added or (TTL 0) removed a neighbor."""
    own: int = 0
    """Our own frames, ignored."""
    rejected: dict[str, int] = field(default_factory=dict)
    """Rejected frames by reason (``truncated``, ``bad-length``, ``order``, ...)."""
    unrecognized_tlvs: int = 0
    """Reserved-type TLVs and unknown organizational TLVs skipped."""
    bad_hints: int = 0
    """pykernel hints TLVs refused (the frame itself was kept)."""
    over_cap: int = 0
    """New neighbors refused because their interface was full."""
    added: int = 0
    changed: int = 0
    expired: int = 0
    shutdowns: int = 0
    """Neighbors removed by a TTL 0 frame."""

    @property
    def rejected_total(self) -> int:
        """All rejected frames."""
        return sum(self.rejected.values())

    def to_json(self) -> dict[str, object]:
        """Return a JSON-ready dict."""
        return {
            "frames": self.frames, "accepted": self.accepted, "own": self.own,
            "rejected": dict(self.rejected), "rejected_total": self.rejected_total,
            "unrecognized_tlvs": self.unrecognized_tlvs, "bad_hints": self.bad_hints,
            "over_cap": self.over_cap, "added": self.added, "changed": self.changed,
            "expired": self.expired, "shutdowns": self.shutdowns,
        }  # fmt: skip


Event = tuple[str, Neighbor, Neighbor | None, str]


class NeighborTable:
    """Thread-safe neighbor table fed with raw Ethernet frames.

    Args:
        own_chassis: our (subtype, chassis ID); frames carrying it are ours and ignored.
        per_interface_cap: most neighbors kept per interface.
        listener: told about additions, changes and removals.
        clock: wall-clock source (tests pass a fake one).

    """

    def __init__(
        self,
        *,
        own_chassis: tuple[int, bytes] | None = None,
        per_interface_cap: int = DEFAULT_CAP,
        listener: NeighborListener | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if per_interface_cap < 1:
            raise ValueError(f"per_interface_cap {per_interface_cap} must be at least 1")
        self._own_chassis = own_chassis
        self._own_macs: frozenset[bytes] = frozenset()
        self._cap = per_interface_cap
        self._listener = listener
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str, str], Neighbor] = {}
        self._counts: Counter[str] = Counter()
        self._rejected: Counter[str] = Counter()
        self.version = 0
        """Bumped on every change of the table's contents (for state-file writers)."""

    def set_own_chassis(self, chassis: tuple[int, bytes]) -> None:
        """Declare our (subtype, chassis ID): frames carrying it are ours."""
        self._own_chassis = chassis

    def set_own_macs(self, macs: Collection[bytes]) -> None:
        """Declare our interfaces' MACs: frames from them are ours."""
        self._own_macs = frozenset(macs)

    def ingest(self, iface: str, frame: bytes) -> Neighbor | None:
        """Account for one received Ethernet frame; never raises.

        Returns:
            The neighbor added or refreshed, or None (rejected, own, removed, over cap).

        """
        events: list[Event] = []
        try:
            with self._lock:
                self._counts["frames"] += 1
                result = self._ingest_locked(iface, frame, events)
        except Exception:  # a bug must not take the agent down: count it, log it
            log.exception("neighbor table: unexpected error on a frame from %s", iface)
            with self._lock:
                self._rejected["internal"] += 1
            result = None
        self._dispatch(events)
        return result

    def _ingest_locked(self, iface: str, frame: bytes, events: list[Event]) -> Neighbor | None:
        try:
            eth = parse_frame(frame)
        except FrameError as exc:
            self._rejected[exc.reason] += 1
            return None
        pdu = eth.lldpdu
        own = self._own_chassis == (pdu.chassis_subtype, pdu.chassis_id)
        if own or eth.source in self._own_macs:
            self._counts["own"] += 1
            return None
        self._counts["accepted"] += 1
        self._counts["unrecognized_tlvs"] += pdu.unrecognized
        now = self._clock()
        new = self._neighbor(iface, pdu, eth.source, now)
        old = self._entries.get(new.key)
        if pdu.ttl == 0:
            if old is not None:
                del self._entries[new.key]
                self._counts["shutdowns"] += 1
                self.version += 1
                events.append(("removed", old, None, "shutdown"))
            return None
        if old is None:
            if sum(1 for k in self._entries if k[0] == iface) >= self._cap:
                self._counts["over_cap"] += 1
                return None
            self._entries[new.key] = new
            self._counts["added"] += 1
            self.version += 1
            events.append(("added", new, None, ""))
            return new
        new = replace(new, first_seen=old.first_seen)
        self._entries[new.key] = new
        self.version += 1  # expiry moved: the state file must show it
        if new.advertisement() != old.advertisement():
            self._counts["changed"] += 1
            events.append(("changed", old, new, ""))
        return new

    def _neighbor(self, iface: str, pdu: Lldpdu, source: bytes, now: float) -> Neighbor:
        hints: Hints | None = None
        hints_error: str | None = None
        for org in pdu.org_tlvs:
            if not is_hints_tlv(org):
                self._counts["unrecognized_tlvs"] += 1
            elif hints is None and hints_error is None:
                try:
                    hints = decode_hints(org.data)
                except HintsError as exc:
                    hints_error = str(exc)
                    self._counts["bad_hints"] += 1
            else:  # a second hints TLV: ambiguous, trust neither
                hints, hints_error = None, "more than one hints TLV"
                self._counts["bad_hints"] += 1
        return Neighbor(
            iface=iface,
            chassis=pdu.chassis_text(),
            port=pdu.port_text(),
            ttl=pdu.ttl,
            first_seen=now,
            last_seen=now,
            source_mac=mac_text(source),
            system_name=pdu.system_name,
            system_description=pdu.system_description,
            port_description=pdu.port_description,
            management_addresses=tuple(m.text() for m in pdu.management_addresses),
            hints=hints,
            hints_error=hints_error,
        )

    def expire(self) -> list[Neighbor]:
        """Remove every neighbor whose TTL has run out; return them."""
        now = self._clock()
        with self._lock:
            gone = [n for n in self._entries.values() if n.expires_at <= now]
            for n in gone:
                del self._entries[n.key]
            if gone:
                self._counts["expired"] += len(gone)
                self.version += 1
        self._dispatch([("removed", n, None, "expired") for n in gone])
        return gone

    def drop_interface(self, iface: str) -> list[Neighbor]:
        """Forget every neighbor learned on ``iface`` (it went down or away)."""
        with self._lock:
            gone = [n for n in self._entries.values() if n.iface == iface]
            for n in gone:
                del self._entries[n.key]
            if gone:
                self.version += 1
        self._dispatch([("removed", n, None, "interface-down") for n in gone])
        return gone

    def neighbors(self) -> list[Neighbor]:
        """Return the live neighbors (expiring first), sorted by key."""
        self.expire()
        with self._lock:
            return sorted(self._entries.values(), key=lambda n: n.key)

    def stats(self) -> TableStats:
        """Return a snapshot of the counters."""
        with self._lock:
            c = self._counts
            return TableStats(
                frames=c["frames"], accepted=c["accepted"], own=c["own"],
                rejected=dict(self._rejected), unrecognized_tlvs=c["unrecognized_tlvs"],
                bad_hints=c["bad_hints"], over_cap=c["over_cap"], added=c["added"],
                changed=c["changed"], expired=c["expired"], shutdowns=c["shutdowns"],
            )  # fmt: skip

    def _dispatch(self, events: list[Event]) -> None:
        if self._listener is None:
            return
        for kind, a, b, reason in events:
            try:
                if kind == "added":
                    self._listener.neighbor_added(a)
                elif kind == "changed" and b is not None:
                    self._listener.neighbor_changed(a, b)
                else:
                    self._listener.neighbor_removed(a, reason)
            except Exception:  # a listener's bug is its own; the table goes on
                log.exception("neighbor listener failed on %s", kind)
