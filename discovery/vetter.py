"""The vetter: probe and beacon each pykernel neighbor, and keep the candidate cache right.

It is a :class:`~discovery.neighbors.NeighborListener`: a new neighbor with hints is
vetted in a worker thread; a changed neighbor loses its candidate and is vetted again; a
removed one loses its candidate. :meth:`Vetter.tick` re-vets neighbors whose candidate
expired or nears its expiry, and retries failed ones after ``retry_interval``. A result
that arrives after its neighbor changed or vanished is thrown away (a generation number
per key).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from discovery._errors import BeaconError, DiscoveryError
from discovery._ifaces import on_link
from discovery.beacon import BeaconKey
from discovery.beacon_net import authenticate
from discovery.candidates import Candidate, CandidateCache
from discovery.neighbors import Neighbor
from discovery.probe import probe_hints

log = logging.getLogger(__name__)


def pick_address(neighbor: Neighbor) -> str | None:
    """Return the management address to reach ``neighbor`` at (IPv4 first), if any.

    Only addresses on the link the neighbor was heard on qualify: LLDP is unauthenticated,
    and a frame must not be able to send our probes anywhere else.
    """
    ips = []
    for text in neighbor.management_addresses:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            continue
        if on_link(neighbor.iface, ip):
            ips.append(ip)
    ips.sort(key=lambda ip: ip.version)
    return str(ips[0]) if ips else None


class Vetter:
    """Probe + beacon for each neighbor that advertises pykernel hints.

    Args:
        key: the beacon key.
        identity: our identity.
        cache: where candidates go.
        host_token: ours, to decide whether shm applies.
        candidate_ttl: seconds a candidate lives before it is vetted again.
        retry_interval: seconds before a failed neighbor is tried again.
        beacon_transport: ``tcp`` or ``udp``.
        timeout: per probe and per beacon exchange, seconds.
        clock: wall clock.

    """

    def __init__(
        self,
        key: BeaconKey,
        identity: str,
        cache: CandidateCache,
        *,
        host_token: bytes = b"",
        candidate_ttl: float = 300.0,
        retry_interval: float = 5.0,
        beacon_transport: str = "tcp",
        timeout: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = key
        self._identity = identity
        self.cache = cache
        self._host_token = host_token
        self._ttl = candidate_ttl
        self._retry = retry_interval
        self._transport = beacon_transport
        self._timeout = timeout
        self._clock = clock
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="vetter")
        self._lock = threading.Lock()
        self._generation: dict[tuple[str, str, str], int] = {}
        self._in_flight: set[tuple[str, str, str]] = set()
        self._last_try: dict[tuple[str, str, str], float] = {}
        self._closed = False

    # -- NeighborListener ---------------------------------------------------------------

    def neighbor_added(self, neighbor: Neighbor) -> None:
        """Vet a new neighbor (if it advertises hints)."""
        self._schedule(neighbor)

    def neighbor_changed(self, old: Neighbor, new: Neighbor) -> None:
        """Drop the candidate of a neighbor that changed, and vet it again."""
        self._bump(new.key)
        self.cache.drop(new.key, "neighbor-changed")
        self._schedule(new, force=True)

    def neighbor_removed(self, neighbor: Neighbor, reason: str) -> None:
        """Drop the candidate of a neighbor that is gone."""
        self._bump(neighbor.key)
        self.cache.drop(neighbor.key, reason)
        with self._lock:
            self._last_try.pop(neighbor.key, None)

    # -- periodic -----------------------------------------------------------------------

    def tick(self, neighbors: Iterable[Neighbor]) -> None:
        """Re-vet neighbors without a live candidate whose last try is old enough.

        A candidate in the last quarter of its life is re-vetted too, while it still
        counts: a peer that passes again is renewed in place (its Hostess lease extended)
        instead of dropping out between expiry and the next vet; one that fails is dropped.
        """
        self.cache.expire()
        renew_before = self._clock() + self._ttl / 4
        for n in neighbors:
            c = self.cache.get(n.key)
            if c is None or c.expires_at <= renew_before:
                self._schedule(n)

    def close(self) -> None:
        """Stop vetting; in-flight results are discarded."""
        self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)

    # -- work ---------------------------------------------------------------------------

    def _bump(self, key: tuple[str, str, str]) -> int:
        with self._lock:
            self._generation[key] = self._generation.get(key, 0) + 1
            return self._generation[key]

    def _schedule(self, n: Neighbor, *, force: bool = False) -> None:
        if n.hints is None or self._closed:
            return
        now = self._clock()
        with self._lock:
            if n.key in self._in_flight:
                return
            if not force and now - self._last_try.get(n.key, -1e18) < self._retry:
                return
            self._in_flight.add(n.key)
            self._last_try[n.key] = now
            gen = self._generation.get(n.key, 0)
        try:
            self._pool.submit(self._vet, n, gen)
        except RuntimeError:  # pool shut down meanwhile
            with self._lock:
                self._in_flight.discard(n.key)

    def _vet(self, n: Neighbor, gen: int) -> None:
        try:
            outcome = self._vet_once(n)
        except Exception as exc:  # never let a worker die silently
            log.exception("vetting %s", n.key)
            outcome = ("internal", repr(exc))
        with self._lock:
            self._in_flight.discard(n.key)
            stale = self._generation.get(n.key, 0) != gen or self._closed
        if stale:
            return
        if isinstance(outcome, Candidate):
            self.cache.put(outcome)
            with self._lock:  # changed or removed while we put it: take it back out
                stale = self._generation.get(n.key, 0) != gen
            if stale:
                self.cache.drop(n.key, "changed")
        else:
            self.cache.fail(n.key, *outcome)

    def _vet_once(self, n: Neighbor) -> Candidate | tuple[str, str]:
        hints = n.hints
        assert hints is not None
        address = pick_address(n)
        if address is None or not hints.beacon_port:
            return ("no-address", "no management address on this link, or no beacon port")
        try:
            probes = probe_hints(
                address, hints, iface=n.iface, local_host_token=self._host_token,
                timeout=self._timeout,
            )  # fmt: skip
        except DiscoveryError as exc:
            return ("probe", str(exc))
        bad = [p for p in probes if not p.ok]
        if bad:
            return ("probe", "; ".join(f"{p.transport} {p.target}: {p.error}" for p in bad))
        try:
            result = authenticate(
                address, hints.beacon_port, self._key, self._identity,
                expected=hints.identity, transport=self._transport, iface=n.iface,
                timeout=self._timeout,
            )  # fmt: skip
        except (BeaconError, DiscoveryError) as exc:
            return ("beacon", str(exc))
        now = self._clock()
        return Candidate(
            iface=n.iface, chassis=n.chassis, port=n.port, identity=result.peer_identity,
            address=address, hints=hints, probes=probes,
            beacon_transport=result.transport, beacon_rtt_s=result.rtt_s,
            verified_at=now, expires_at=now + self._ttl,
        )  # fmt: skip
