"""Discovery: frame parse, neighbor-table ingest, beacon exchange on loopback, Hostess hand-off.

Run: ``pytest benches/test_bench_discovery.py``. Frames are built once with scapy (ms each),
then only our own parser and table run in the timed loops. The beacon responder's rate
limit is raised so that the loop measures the exchange, not the limiter.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from control.discovery_server import HostessPeers
from control.hostess import Hostess
from discovery.beacon import BeaconKey, BeaconResponder
from discovery.beacon_net import BeaconServer, authenticate
from discovery.candidates import Candidate
from discovery.frames import FrameSpec, build_frame
from discovery.hints import Hints
from discovery.neighbors import NeighborTable
from discovery.probe import ProbeResult
from discovery.tlv import ManagementAddress, parse_frame

NEIGHBORS = 64


def frame(n: int) -> bytes:
    """A full pykernel LLDPDU: mandatory TLVs, names, a management address and hints."""
    mac = bytes.fromhex(f"02000000{n >> 8:02x}{n & 0xFF:02x}")
    hints = Hints(identity=f"h{n}.lab:kernel", control_port=7780, beacon_port=7700,
                  echo_port=7701, transports=("tcp", "udp", "shm"), host_token=bytes(16),
                  shm_name=f"pk-probe-{n}")  # fmt: skip
    return build_frame(FrameSpec(
        source_mac=mac, chassis_subtype=4, chassis_id=mac, port_subtype=5, port_id=b"eth0",
        ttl=121, system_name=f"h{n}", system_description=f"pykernel h{n}.lab:kernel",
        management_addresses=(ManagementAddress(1, bytes([10, 0, n >> 8, n & 0xFF]), 2, 2),),
        org_tlvs=(hints.to_org_tlv(),),
    ))  # fmt: skip


@pytest.fixture(scope="module")
def frames() -> list[bytes]:
    """NEIGHBORS distinct frames, built once."""
    return [frame(n) for n in range(1, NEIGHBORS + 1)]


def test_parse_frame(record_machine, frames: list[bytes]) -> None:  # type: ignore[no-untyped-def]
    """Parse one Ethernet LLDP frame with hints (our TLV walker, no scapy)."""
    parsed = record_machine(parse_frame, frames[0])
    assert parsed.lldpdu.system_name == "h1"


def test_ingest_refresh(record_machine, frames: list[bytes]) -> None:  # type: ignore[no-untyped-def]
    """Ingest a frame of a known neighbor (the steady state: a refresh every tx_interval)."""
    table = NeighborTable(per_interface_cap=NEIGHBORS)
    table.ingest("eth0", frames[0])
    neighbor = record_machine(table.ingest, "eth0", frames[0])
    assert neighbor is not None and neighbor.hints is not None


def test_ingest_round_robin(record_machine, frames: list[bytes]) -> None:  # type: ignore[no-untyped-def]
    """Ingest frames of 64 neighbors in turn (a busy segment)."""
    table = NeighborTable(per_interface_cap=NEIGHBORS)
    cycle = itertools.cycle(frames)
    record_machine(lambda: table.ingest("eth0", next(cycle)))
    assert len(table.neighbors()) == NEIGHBORS


@pytest.fixture(scope="module")
def beacon() -> Iterator[tuple[BeaconServer, BeaconKey]]:
    """A beacon server on loopback (TCP and UDP on one port), limiter out of the way."""
    key = BeaconKey.derive("a long shared passphrase for the bench")
    responder = BeaconResponder(key, "srv.lab:kernel", rate=1e6, burst=1e6, global_rate=1e6)
    server = BeaconServer(responder, "127.0.0.1").start()
    try:
        yield server, key
    finally:
        server.close()


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_beacon_exchange(record_machine, beacon, transport: str) -> None:  # type: ignore[no-untyped-def]
    """One full mutual authentication (HELLO, CHALLENGE, PROOF, ACCEPT) over loopback."""
    server, key = beacon
    result = record_machine(authenticate, "127.0.0.1", server.port, key, "cli.lab:kernel",
                            expected="srv.lab:kernel", transport=transport)
    assert result.peer_identity == "srv.lab:kernel"


def test_candidate_to_hostess(record_machine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Hand a re-vetted candidate to Hostess (leave + register in SQLite, WAL)."""
    c = Candidate(
        iface="eth0", chassis="02:00:00:00:00:02", port="eth0", identity="h2.lab:kernel",
        address="10.0.0.2", hints=Hints(identity="h2.lab:kernel", beacon_port=7700),
        probes=(ProbeResult("tcp", "10.0.0.2:7780", True, 0.0004),), beacon_transport="tcp",
        beacon_rtt_s=0.0005, verified_at=time.time(), expires_at=time.time() + 300,
    )  # fmt: skip
    with Hostess(tmp_path / "hostess.sqlite") as book:
        peers = HostessPeers(book)
        record_machine(peers.candidate_added, c)
        assert len(book.query("tag=peer")) == 1 and peers.errors == []
