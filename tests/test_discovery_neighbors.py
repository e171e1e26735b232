"""The neighbor table: keys, TTL, shutdown, cap, own frames, counters, listener."""

from __future__ import annotations

import functools

from hypothesis import given, settings
from hypothesis import strategies as st

from discovery import Hints, Neighbor, NeighborTable
from discovery.frames import FrameSpec, build_frame
from discovery.hints import PYKERNEL_OUI
from discovery.tlv import ManagementAddress, OrgTlv

OUR_MAC = bytes.fromhex("020000000000")


@functools.cache  # scapy takes milliseconds a frame
def frame(n: int = 1, *, ttl: int = 10, name: str = "peer", org: tuple[OrgTlv, ...] = ()) -> bytes:
    mac = bytes.fromhex(f"0200000000{n:02x}")
    return build_frame(FrameSpec(
        source_mac=mac, chassis_subtype=4, chassis_id=mac, port_subtype=5, port_id=b"eth0",
        ttl=ttl, system_name=name,
        management_addresses=(ManagementAddress(1, bytes([10, 0, 0, n]), 2, 2),), org_tlvs=org,
    ))  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def neighbor_added(self, neighbor: Neighbor) -> None:
        self.events.append(("added", neighbor.chassis))

    def neighbor_changed(self, old: Neighbor, new: Neighbor) -> None:
        self.events.append(("changed", new.system_name or ""))

    def neighbor_removed(self, neighbor: Neighbor, reason: str) -> None:
        self.events.append(("removed", reason))


def table(**kw: object) -> tuple[NeighborTable, Clock, Recorder]:
    clock, rec = Clock(), Recorder()
    t = NeighborTable(own_chassis=(4, OUR_MAC), listener=rec, clock=clock, **kw)  # type: ignore[arg-type]
    return t, clock, rec


class TestLifecycle:
    def test_neighbor_appears_with_its_fields(self) -> None:
        """A frame adds a neighbor keyed by (iface, chassis, port) with its fields."""
        t, _, rec = table()
        n = t.ingest("veth0", frame(1))
        assert n is not None and n.key == ("veth0", "02:00:00:00:00:01", "eth0")
        assert (n.system_name, n.management_addresses, n.ttl) == ("peer", ("10.0.0.1",), 10)
        assert rec.events == [("added", "02:00:00:00:00:01")]

    def test_same_peer_on_two_interfaces_is_two_neighbors(self) -> None:
        """The local interface is part of the key."""
        t, _, _ = table()
        t.ingest("veth0", frame(1))
        t.ingest("veth1", frame(1))
        assert [n.iface for n in t.neighbors()] == ["veth0", "veth1"]

    def test_refresh_extends_ttl_without_event_and_change_reports(self) -> None:
        """A refresh moves the expiry silently; a new advertisement is a change."""
        t, clock, rec = table()
        t.ingest("veth0", frame(1))
        clock.t += 8
        t.ingest("veth0", frame(1))
        clock.t += 8  # 16 s after the first frame, 8 after the refresh: still alive
        assert len(t.neighbors()) == 1
        t.ingest("veth0", frame(1, name="renamed"))
        assert rec.events[1:] == [("changed", "renamed")]
        assert t.neighbors()[0].first_seen == 1000.0

    def test_expires_after_ttl(self) -> None:
        """A neighbor not heard for TTL seconds is removed as expired."""
        t, clock, rec = table()
        t.ingest("veth0", frame(1, ttl=5))
        clock.t += 4.9
        assert len(t.neighbors()) == 1
        clock.t += 0.2
        assert t.neighbors() == []
        assert rec.events[-1] == ("removed", "expired")
        assert t.stats().expired == 1

    def test_ttl_zero_removes_at_once(self) -> None:
        """A shutdown LLDPDU (TTL 0) removes the neighbor immediately."""
        t, _, rec = table()
        t.ingest("veth0", frame(1, ttl=120))
        assert t.ingest("veth0", frame(1, ttl=0)) is None
        assert t.neighbors() == [] and rec.events[-1] == ("removed", "shutdown")
        assert t.stats().shutdowns == 1

    def test_ttl_zero_for_unknown_neighbor_adds_nothing(self) -> None:
        """A shutdown from a neighbor we never knew changes nothing."""
        t, _, rec = table()
        t.ingest("veth0", frame(1, ttl=0))
        assert t.neighbors() == [] and rec.events == []

    def test_drop_interface(self) -> None:
        """An interface going down forgets its neighbors."""
        t, _, rec = table()
        t.ingest("veth0", frame(1))
        t.ingest("veth1", frame(2))
        assert [n.iface for n in t.drop_interface("veth0")] == ["veth0"]
        assert [n.iface for n in t.neighbors()] == ["veth1"]
        assert ("removed", "interface-down") in rec.events


class TestGuards:
    def test_per_interface_cap(self) -> None:
        """Beyond the cap, new neighbors on that interface are refused and counted."""
        t, _, _ = table(per_interface_cap=2)
        for i in range(1, 5):
            t.ingest("veth0", frame(i))
        t.ingest("veth1", frame(9))
        assert len([n for n in t.neighbors() if n.iface == "veth0"]) == 2
        assert len(t.neighbors()) == 3 and t.stats().over_cap == 2
        t.ingest("veth0", frame(1))  # a known one still refreshes
        assert t.stats().over_cap == 2

    def test_own_frames_ignored(self) -> None:
        """Frames with our chassis ID or from one of our MACs are ours."""
        t, _, _ = table()
        own = build_frame(FrameSpec(OUR_MAC, 4, OUR_MAC, 5, b"eth0", 10))
        t.set_own_macs({bytes.fromhex("020000000005")})
        t.ingest("veth0", own)
        t.ingest("veth0", frame(5))
        assert t.neighbors() == [] and t.stats().own == 2

    def test_rejections_counted_by_reason(self) -> None:
        """Bad frames are counted by reason and never raise."""
        t, _, _ = table()
        good = frame(1)
        t.ingest("veth0", good[:20])
        t.ingest("veth0", good[:14] + good[14 + 9 :])  # chassis TLV removed: order
        t.ingest("veth0", b"")
        s = t.stats()
        assert s.frames == 3 and s.accepted == 0
        assert s.rejected == {"bad-length": 1, "order": 1, "truncated": 1}

    def test_unknown_org_and_bad_hints_are_counted_not_fatal(self) -> None:
        """Unknown organizational TLVs count as unrecognized; bad hints keep the neighbor."""
        t, _, _ = table()
        unknown = OrgTlv(b"\x00\x12\x0f", 2, b"\x01\x02")
        bad = OrgTlv(PYKERNEL_OUI, 1, b"\x07" + bytes(8))
        n = t.ingest("veth0", frame(1, org=(unknown, bad)))
        assert n is not None and n.hints is None
        assert n.hints_error is not None and "version 7 unknown" in n.hints_error
        assert (t.stats().unrecognized_tlvs, t.stats().bad_hints) == (1, 1)

    def test_good_hints_are_decoded(self) -> None:
        """A pykernel hints TLV becomes the neighbor's hints."""
        h = Hints(identity="peer:kernel", beacon_port=7000, transports=("tcp",))
        t, _, _ = table()
        n = t.ingest("veth0", frame(1, org=(h.to_org_tlv(),)))
        assert n is not None and n.hints == h

    def test_listener_failure_does_not_break_the_table(self) -> None:
        """A listener that raises is logged; the table goes on."""

        class Broken(Recorder):
            def neighbor_added(self, neighbor: Neighbor) -> None:
                raise RuntimeError("listener bug")

        t = NeighborTable(listener=Broken())
        t.ingest("veth0", frame(1))
        assert len(t.neighbors()) == 1

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=300), st.integers(0, 200), st.integers(0, 255))
    def test_fuzzed_frames_are_always_counted(self, junk: bytes, pos: int, value: int) -> None:
        """Random and mutated frames never raise, and every one is counted somewhere."""
        t, _, _ = table()
        mutated = bytearray(frame(1))
        mutated[pos % len(mutated)] = value
        for data in (junk, bytes(mutated)):
            t.ingest("veth0", data)
        s = t.stats()
        assert s.frames == 2 == s.accepted + s.own + s.rejected_total
