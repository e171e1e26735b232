"""HostessPeers: vetted candidates become Hostess guests (a real SQLite registry)."""

from __future__ import annotations

import ast
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control.discovery_server import HostessPeers, peer_identity, pipe_sink
from control.hostess import Hostess, IdentityError, Lease
from discovery.candidates import Candidate
from discovery.hints import Hints
from discovery.probe import ProbeResult
from pykernel import Pipe, PipeEmpty

NOW = 1_900_000_000.0  # a fixed wall clock, far from the real one


def candidate(identity: str = "h2.lab:kernel", iface: str = "eth0", port: str = "eth0",
              ttl: float = 300.0, address: str = "10.0.0.2") -> Candidate:
    """A candidate as the vetter makes it, verified at NOW."""
    return Candidate(
        iface=iface, chassis="02:00:00:00:00:02", port=port, identity=identity,
        address=address, hints=Hints(identity=identity, control_port=7780, beacon_port=7700,
                                     echo_port=7701, transports=("tcp", "udp")),
        probes=(ProbeResult("tcp", f"{address}:7780", True, 0.0004),),
        beacon_transport="tcp", beacon_rtt_s=0.0005, verified_at=NOW, expires_at=NOW + ttl,
    )  # fmt: skip


@pytest.fixture
def book(tmp_path: Path) -> Iterator[Hostess]:
    """A fresh registry file."""
    with Hostess(tmp_path / "hostess.sqlite") as hostess:
        yield hostess


@pytest.fixture
def peers(book: Hostess) -> HostessPeers:
    """A listener on ``book`` whose clock reads NOW."""
    return HostessPeers(book, found_by="lab/discovery", tags=["lab"], clock=lambda: NOW)


def guests(book: Hostess, expr: str = "tag=peer") -> dict[str, Any]:
    """Guests matching ``expr`` by fqdn, as dicts."""
    return {g.identity.fqdn: g.to_dict() for g in book.query(expr)}


class TestAdded:
    def test_candidate_becomes_a_tagged_peer_guest(self, book: Hostess,
                                                   peers: HostessPeers) -> None:
        """The peer kernel is registered with its proven identity, tags and whereabouts."""
        peers.candidate_added(candidate())
        (guest,) = guests(book).values()
        assert guest["identity"].startswith("h2.lab:kernel:706b00:peer:1:passphrase:")
        assert guest["tags"] == ["discovery", "lab", "peer", "via:eth0"]
        assert guest["terminals"] == []
        meta = guest["metadata"]
        assert (meta["address"], meta["iface"], meta["control_port"]) == ("10.0.0.2", "eth0", 7780)
        assert meta["found_by"] == "lab/discovery" and meta["expires_at"] == NOW + 300
        assert meta["probes"] == [{"transport": "tcp", "ok": True, "rtt_s": 0.0004}]
        assert guest["lease"] == {"expires": pytest.approx(time.time() + 300, abs=5)}
        assert peers.errors == []

    def test_same_peer_same_uuid(self) -> None:
        """The guest's UUID comes from the proven identity: stable across re-vetting."""
        a, b = peer_identity(candidate()), peer_identity(candidate(iface="eth1", ttl=5))
        assert a == b and peer_identity(candidate("h3.lab:kernel")).uuid != a.uuid

    def test_revetted_candidate_is_one_guest_with_a_new_expiry(self, book: Hostess,
                                                               peers: HostessPeers) -> None:
        """Vetted again, the peer is re-registered, not duplicated."""
        peers.candidate_added(candidate(ttl=10))
        peers.candidate_added(candidate(ttl=600))
        (guest,) = guests(book).values()
        assert guest["metadata"]["expires_at"] == NOW + 600

    def test_full_identity_is_taken_as_proven(self, book: Hostess,
                                              peers: HostessPeers) -> None:
        """A peer advertising a complete Hostess identity keeps it."""
        ident = "h4.lab:edge:0x1f:ops:1:token:6f0c2a52-8a43-4c4e-9a0e-0d0f3b9d7a11"
        peers.candidate_added(candidate(ident))
        (guest,) = guests(book).values()
        assert guest["identity"] == ident.replace("0x1f", "1f")
        assert guest["owner"] == "ops"

    def test_identity_unfit_for_hostess_is_recorded_not_raised(
            self, book: Hostess, peers: HostessPeers) -> None:
        """A proven identity Hostess cannot hold is an error entry, not an exception."""
        peers.candidate_added(candidate("not_a_host!:kernel"))
        assert guests(book) == {} and peers.peers() == []
        assert "fqdn" in peers.errors[0] and "not_a_host!" in peers.errors[0]

    def test_conflict_with_a_live_guest_is_recorded(self, book: Hostess,
                                                    peers: HostessPeers) -> None:
        """A live guest already holding the peer's fqdn and name wins; the refusal is kept."""
        book.register("h2.lab:kernel:1:me:0:none:11111111-2222-4333-8444-555555555555",
                      lease=Lease.process())
        peers.candidate_added(candidate())
        assert [g["owner"] for g in guests(book, "").values()] == ["me"]
        assert "registered and alive" in peers.errors[-1] and peers.peers() == []

    def test_sink_hears_every_change_and_its_failure_is_contained(
            self, peers: HostessPeers) -> None:
        """Events go to the sink; a failing sink changes nothing else."""
        seen: list[dict[str, Any]] = []
        peers.sink = seen.append
        peers.candidate_added(candidate())
        peers.candidate_dropped(candidate(), "expired")
        assert [(e["event"], e["reason"]) for e in seen] == [("added", ""), ("dropped", "expired")]
        assert seen[0]["candidate"]["identity"] == "h2.lab:kernel"

        def broken(event: dict[str, Any]) -> None:
            raise RuntimeError("sink down")

        peers.sink = broken
        peers.candidate_added(candidate())
        assert len(peers.peers()) == 1


class TestDropped:
    def test_dropped_candidate_leaves_hostess(self, book: Hostess, peers: HostessPeers) -> None:
        """A dropped candidate's peer is gone from Hostess at once."""
        peers.candidate_added(candidate())
        peers.candidate_dropped(candidate(), "shutdown")
        assert guests(book) == {} and peers.peers() == []

    def test_peer_on_two_links_stays_until_both_drop(self, book: Hostess,
                                                     peers: HostessPeers) -> None:
        """One guest per peer; it leaves only when its last candidate is dropped."""
        peers.candidate_added(candidate(iface="eth0", ttl=100))
        peers.candidate_added(candidate(iface="eth1", ttl=50))
        (guest,) = guests(book).values()
        assert guest["metadata"]["iface"] == "eth0"  # the latest expiry is kept
        peers.candidate_dropped(candidate(iface="eth0"), "expired")
        (guest,) = guests(book).values()
        assert guest["metadata"]["iface"] == "eth1" and "via:eth1" in guest["tags"]
        peers.candidate_dropped(candidate(iface="eth1"), "expired")
        assert guests(book) == {}

    def test_neighbor_that_became_another_peer(self, book: Hostess,
                                               peers: HostessPeers) -> None:
        """A neighbor key proven as a new identity moves: the old peer leaves."""
        peers.candidate_added(candidate("h2.lab:kernel"))
        peers.candidate_added(candidate("h5.lab:kernel"))
        assert set(guests(book)) == {"h5.lab"}

    def test_unknown_drop_is_harmless(self, book: Hostess, peers: HostessPeers) -> None:
        """Dropping what was never added changes nothing."""
        peers.candidate_added(candidate())
        peers.candidate_dropped(candidate(iface="eth9"), "expired")
        assert set(guests(book)) == {"h2.lab"} and peers.errors == []

    def test_close_removes_every_peer(self, book: Hostess, peers: HostessPeers) -> None:
        """At stop the listener takes back every guest it registered, and only those."""
        book.register("local.lab:cam:1:me:0:none:11111111-2222-4333-8444-555555555555",
                      lease=Lease.process())
        for name in ("h2", "h3", "h4"):
            peers.candidate_added(candidate(f"{name}.lab:kernel", port=name))
        assert len(guests(book)) == 3
        peers.close()
        assert guests(book) == {} and set(guests(book, "")) == {"local.lab"}

    def test_peer_removed_by_someone_else_is_no_error(self, book: Hostess,
                                                      peers: HostessPeers) -> None:
        """An operator may remove the guest first (`pykernel hostess leave`)."""
        peers.candidate_added(candidate())
        book.leave(peer_identity(candidate()).uuid)
        peers.candidate_dropped(candidate(), "expired")
        assert peers.errors == []


class TestUntrustedIdentities:
    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=80)
           .filter(str.isprintable))  # what the hints TLV can carry
    def test_any_identity_registers_or_is_recorded(self, book: Hostess, text: str) -> None:
        """Whatever identity a peer proved, the listener registers it or records why not."""
        peers = HostessPeers(book, clock=lambda: NOW)
        try:
            expected: str | None = str(peer_identity(candidate(text)).uuid)
        except IdentityError:
            expected = None
        peers.candidate_added(candidate(text))
        assert peers.peers() == ([expected] if expected else [])
        assert bool(peers.errors) == (expected is None)
        peers.close()
        assert book.query("tag=peer") == []


class TestLease:
    def test_lease_follows_the_candidate_within_bounds(self, book: Hostess) -> None:
        """The lease ends with the candidate; at least a second, at most Hostess's year."""
        now = time.time()
        for ttl, want in ((300.0, 300.0), (-50.0, 1.0), (1e10, 365 * 24 * 3600.0)):
            peers = HostessPeers(book, clock=lambda: NOW)
            peers.candidate_added(candidate(ttl=ttl))
            (guest,) = guests(book).values()
            assert guest["lease"]["expires"] == pytest.approx(now + want, abs=5)
            peers.close()


class TestCandidatesOutput:
    def test_events_go_through_a_real_pipe_and_a_full_one_drops(self, peers: HostessPeers) -> None:
        """Each change is one JSON message on the `candidates` pipe; when the pipe is full,
        events are dropped and discovery goes on."""
        name = f"pktest-disc-{secrets.token_hex(4)}"
        pipe = Pipe.create(name, slot_size=4096, slots=2)
        try:
            reader, writer = pipe.reader(), pipe.writer()
            peers.sink = pipe_sink(writer)
            peers.candidate_added(candidate())
            peers.candidate_dropped(candidate(), "shutdown")
            events = [json.loads(reader.recv(timeout=1)) for _ in range(2)]
            assert [(e["event"], e["reason"]) for e in events] == [
                ("added", ""), ("dropped", "shutdown")]
            assert events[0]["candidate"]["address"] == "10.0.0.2"
            for _ in range(3):  # two fill the ring, the third finds it full
                peers.candidate_added(candidate())
            assert len(peers.peers()) == 1
            assert [json.loads(reader.recv(timeout=1))["event"] for _ in range(2)] == [
                "added", "added"]
            with pytest.raises(PipeEmpty):
                reader.recv_nowait()
        finally:
            pipe.close()
            Pipe.unlink(name)


class TestLayers:
    def test_control_imports_discovery_only_in_the_discovery_server(self) -> None:
        """DESIGN: control imports discovery only where it starts it as a server."""
        root = Path(__file__).resolve().parents[1]
        importers = set()
        for path in (root / "control").rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                         [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                if any(n == "discovery" or n.startswith("discovery.") for n in names):
                    importers.add(path.relative_to(root).as_posix())
        assert importers == {"control/discovery_server.py"}
