"""Candidate cache and vetter on loopback: probe + beacon make candidates, failures drop them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from discovery import Candidate, CandidateCache, Hints, Neighbor, ProbeResult
from discovery.beacon import BeaconKey, BeaconResponder
from discovery.beacon_net import BeaconServer
from discovery.probe import UdpEchoServer
from discovery.vetter import Vetter, pick_address

KEY = BeaconKey.derive("candidate test passphrase")
OTHER = BeaconKey.derive("some other passphrase")


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Events:
    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []

    def candidate_added(self, candidate: Candidate) -> None:
        self.log.append(("added", candidate.identity))

    def candidate_dropped(self, candidate: Candidate, reason: str) -> None:
        self.log.append(("dropped", reason))


@pytest.fixture
def peer() -> Iterator[Hints]:
    """A peer kernel on loopback: beacon (TCP+UDP) and UDP echo."""
    beacon = BeaconServer(BeaconResponder(KEY, "peer:kernel"), "127.0.0.1").start()
    echo = UdpEchoServer("127.0.0.1").start()
    yield Hints(identity="peer:kernel", control_port=beacon.port, beacon_port=beacon.port,
                echo_port=echo.port, transports=("tcp", "udp"))  # fmt: skip
    beacon.close()
    echo.close()


def neighbor(hints: Hints | None, name: str = "peer", addr: str = "127.0.0.1") -> Neighbor:
    return Neighbor(iface="lo", chassis="02:00:00:00:00:01", port="eth0", ttl=30,
                    first_seen=0.0, last_seen=time.time(), source_mac="02:00:00:00:00:01",
                    system_name=name, management_addresses=(addr,), hints=hints)  # fmt: skip


def wait(check, timeout: float = 5.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
    return value


def make(key: BeaconKey = KEY, **kw: object) -> tuple[Vetter, CandidateCache, Events]:
    events = Events()
    cache = CandidateCache(listener=events)
    vetter = Vetter(key, "me:kernel", cache, retry_interval=0.2, timeout=1.0, **kw)  # type: ignore[arg-type]
    return vetter, cache, events


class TestVetter:
    def test_probe_and_beacon_make_a_candidate(self, peer: Hints) -> None:
        """A neighbor whose probes and beacon pass is cached with RTTs and its identity."""
        vetter, cache, events = make()
        try:
            vetter.neighbor_added(neighbor(peer))
            c = wait(lambda: cache.get(("lo", "02:00:00:00:00:01", "eth0")))
            assert c.identity == "peer:kernel" and c.address == "127.0.0.1"
            assert [(p.transport, p.ok) for p in c.probes] == [("tcp", True), ("udp", True)]
            assert events.log == [("added", "peer:kernel")]
        finally:
            vetter.close()

    def test_wrong_passphrase_is_a_beacon_failure(self, peer: Hints) -> None:
        """Another passphrase: no candidate, the failure names the beacon stage."""
        vetter, cache, _ = make(OTHER)
        try:
            vetter.neighbor_added(neighbor(peer))
            f = wait(cache.failures)[0]
            assert (f.stage, f.detail) == ("beacon", "beacon authentication failed")
            assert cache.candidates() == []
        finally:
            vetter.close()

    def test_hints_claiming_another_identity_fail(self, peer: Hints) -> None:
        """Hints are untrusted: the beacon must prove the identity they claim."""
        liar = Hints(identity="someone:else", beacon_port=peer.beacon_port, transports=())
        vetter, cache, _ = make()
        try:
            vetter.neighbor_added(neighbor(liar))
            assert wait(cache.failures)[0].stage == "beacon"
        finally:
            vetter.close()

    def test_failed_probe_stops_before_the_beacon(self, peer: Hints) -> None:
        """A dead advertised port fails the probe stage."""
        broken = Hints(identity="peer:kernel", control_port=1, beacon_port=peer.beacon_port,
                       transports=("tcp",))  # fmt: skip
        vetter, cache, _ = make()
        try:
            vetter.neighbor_added(neighbor(broken))
            f = wait(cache.failures)[0]
            assert f.stage == "probe" and "Connection refused" in f.detail
        finally:
            vetter.close()

    def test_change_and_removal_drop_the_candidate(self, peer: Hints) -> None:
        """A changed neighbor loses its candidate (then is vetted again); removal drops it."""
        vetter, cache, events = make()
        key = ("lo", "02:00:00:00:00:01", "eth0")
        try:
            n = neighbor(peer)
            vetter.neighbor_added(n)
            wait(lambda: cache.get(key))
            vetter.neighbor_changed(n, neighbor(peer, name="renamed"))
            assert ("dropped", "neighbor-changed") in events.log
            wait(lambda: cache.get(key))
            vetter.neighbor_removed(n, "shutdown")
            assert cache.get(key) is None and events.log[-1] == ("dropped", "shutdown")
        finally:
            vetter.close()

    def test_without_hints_or_address_nothing_happens(self) -> None:
        """Neighbors without hints are not vetted; without an address they fail early."""
        vetter, cache, _ = make()
        try:
            vetter.neighbor_added(neighbor(None))
            h = Hints(identity="p:k", beacon_port=7700)
            vetter.neighbor_added(neighbor(h, addr="02:00:00:00:00:01"))
            assert wait(cache.failures)[0].stage == "no-address"
        finally:
            vetter.close()

    def test_pick_address_prefers_ipv4_on_link(self) -> None:
        """IPv4 first, then IPv6; non-IP and off-link addresses are ignored."""
        n = replace(neighbor(None), management_addresses=("aa:bb", "fe80::1", "127.0.0.9"))
        assert pick_address(n) == "127.0.0.9"
        n = replace(n, management_addresses=("192.0.2.1", "fe80::1"))
        assert pick_address(n) == "fe80::1"
        assert pick_address(replace(n, management_addresses=("192.0.2.1",))) is None

    def test_off_link_address_is_never_contacted(self, peer: Hints) -> None:
        """A frame advertising an address off the link fails before any probe."""
        vetter, cache, _ = make()
        try:
            vetter.neighbor_added(neighbor(peer, addr="192.0.2.1"))
            f = wait(cache.failures)[0]
            assert f.stage == "no-address" and "on this link" in f.detail
        finally:
            vetter.close()


class TestCache:
    def test_a_candidate_is_renewed_before_it_expires(self, peer: Hints) -> None:
        """In the last quarter of its life the candidate is re-vetted and replaced in
        place: the listener sees a second "added" and never a "dropped"."""
        vetter, cache, events = make(candidate_ttl=2.0)
        key = ("lo", "02:00:00:00:00:01", "eth0")
        try:
            n = neighbor(peer)
            vetter.neighbor_added(n)
            first = wait(lambda: cache.get(key))
            vetter.tick([n])  # fresh: nothing to do
            time.sleep(0.05)
            assert cache.get(key) is first and events.log == [("added", "peer:kernel")]
            wait(lambda: time.time() >= first.expires_at - 0.5, timeout=5)
            vetter.tick([n])  # the last quarter: re-vet now, while it still counts
            renewed = wait(lambda: (c := cache.get(key)) is not None and c is not first and c)
            assert renewed.expires_at > first.expires_at
            assert events.log == [("added", "peer:kernel"), ("added", "peer:kernel")]
        finally:
            vetter.close()

    def test_expiry(self) -> None:
        """Candidates expire at their expiry time and the listener is told."""
        clock, events = Clock(), Events()
        cache = CandidateCache(listener=events, clock=clock)
        hints = Hints(identity="p:k")
        probe = ProbeResult("tcp", "x", True, 0.1)
        c = Candidate("lo", "c", "p", "p:k", "127.0.0.1", hints, (probe,), "tcp", 0.1, 1000.0,
                      1010.0)  # fmt: skip
        cache.put(c)
        clock.t = 1009.9
        assert cache.candidates() == [c]
        clock.t = 1010.0
        assert cache.candidates() == [] and events.log[-1] == ("dropped", "expired")

    def test_failure_replaces_candidate(self) -> None:
        """A later failure drops the candidate and is kept for operators."""
        cache = CandidateCache()
        c = Candidate("lo", "c", "p", "p:k", "127.0.0.1", Hints(identity="p:k"), (), "tcp",
                      0.1, 1.0, 4e9)  # fmt: skip
        cache.put(c)
        cache.fail(c.key, "beacon", "beacon authentication failed")
        assert cache.candidates() == [] and cache.failures()[0].stage == "beacon"
        cache.drop(c.key, "expired")
        assert cache.failures() == []
