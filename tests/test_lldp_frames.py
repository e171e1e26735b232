"""Building frames with scapy: round trips through our parser, and limits refused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from discovery import Hints, HintsError, TlvLimitError
from discovery.frames import FrameSpec, build_frame
from discovery.hints import PYKERNEL_OUI, decode_hints, is_hints_tlv
from discovery.tlv import ManagementAddress, OrgTlv, parse_frame

MAC = bytes.fromhex("020000000001")
HINTS = Hints(
    identity="host-a.example:kernel",
    control_port=8080,
    beacon_port=7000,
    echo_port=7001,
    transports=("tcp", "udp", "shm"),
    host_token=bytes(range(16)),
    shm_name="pk-probe-1",
)


def spec(**kw: object) -> FrameSpec:
    base: dict[str, object] = {
        "source_mac": MAC, "chassis_subtype": 4, "chassis_id": MAC, "port_subtype": 5,
        "port_id": b"eth0", "ttl": 121,
    }  # fmt: skip
    base.update(kw)
    return FrameSpec(**base)  # type: ignore[arg-type]


class TestBuild:
    def test_round_trip_through_our_parser(self) -> None:
        """Every field we build comes back from our own parser unchanged."""
        s = spec(
            system_name="host-a", system_description="pykernel", port_description="eth0",
            management_addresses=(ManagementAddress(1, bytes([10, 0, 0, 1]), 2, 3),),
            org_tlvs=(HINTS.to_org_tlv(),),
        )  # fmt: skip
        eth = parse_frame(build_frame(s))
        p = eth.lldpdu
        assert eth.destination.hex() == "0180c200000e" and eth.source == MAC
        assert (p.chassis_id, p.port_id, p.ttl) == (MAC, b"eth0", 121)
        assert (p.system_name, p.system_description, p.port_description) == (
            "host-a", "pykernel", "eth0")  # fmt: skip
        assert p.capabilities == (0x80, 0x80)
        assert p.management_addresses[0].text() == "10.0.0.1"
        assert is_hints_tlv(p.org_tlvs[0]) and decode_hints(p.org_tlvs[0].data) == HINTS

    @pytest.mark.parametrize(
        ("chassis", "port"),
        [((5, bytes([1, 10, 0, 0, 1])), (4, bytes([2]) + bytes(16))), ((7, b"abc"), (3, MAC))],
    )
    def test_id_subtypes(self, chassis: tuple[int, bytes], port: tuple[int, bytes]) -> None:
        """Network-address, local and MAC ID subtypes survive scapy's typed fields."""
        s = spec(chassis_subtype=chassis[0], chassis_id=chassis[1], port_subtype=port[0],
                 port_id=port[1])  # fmt: skip
        p = parse_frame(build_frame(s)).lldpdu
        assert (p.chassis_subtype, p.chassis_id, p.port_subtype, p.port_id) == (*chassis, *port)

    def test_shutdown_frame_has_ttl_zero(self) -> None:
        """A shutdown LLDPDU carries TTL 0."""
        assert parse_frame(build_frame(spec(ttl=0))).lldpdu.ttl == 0


class TestLimits:
    @pytest.mark.parametrize(
        ("kw", "message"),
        [
            ({"system_name": "n" * 256}, r"System Name of 256 bytes over the 255-byte limit"),
            ({"system_name": "n" * 512}, r"System Name of 512 bytes"),  # scapy would encode 0
            ({"system_description": "é" * 128}, r"System Description of 256 bytes"),
            ({"port_description": "p" * 300}, r"Port Description of 300 bytes"),
            ({"chassis_id": b""}, r"Chassis ID of 0 bytes, must be 1-255"),
            ({"port_id": b"x" * 256}, r"Port ID of 256 bytes"),
            ({"chassis_subtype": 0}, r"Chassis ID subtype 0 outside 1-7"),
            ({"ttl": 65536}, r"TTL 65536 outside 0-65535"),
            ({"ttl": -1}, r"TTL -1"),
            ({"source_mac": b"\x01"}, r"source MAC of 1 bytes"),
            ({"org_tlvs": (OrgTlv(PYKERNEL_OUI, 9, bytes(508)),)}, r"508 bytes over the 507"),
            ({"org_tlvs": (OrgTlv(b"\x00", 1, b""),)}, r"OUI 00"),
            ({"management_addresses": (ManagementAddress(1, bytes(32), 2, 1),)}, r"32 bytes"),
            ({"chassis_subtype": 5, "chassis_id": b"\x09abc"}, r"IPv4 \(family 1\) or IPv6"),
        ],
    )
    def test_over_limit_refused_before_scapy(self, kw: dict[str, object], message: str) -> None:
        """Values over 802.1AB limits are refused with an error naming the field."""
        with pytest.raises(TlvLimitError, match=message):
            build_frame(spec(**kw))

    def test_whole_lldpdu_over_1500_refused(self) -> None:
        """Many legal TLVs that add up past 1500 bytes are refused."""
        big = tuple(OrgTlv(b"\x00\x00\x01", i, bytes(400)) for i in range(4))
        with pytest.raises(TlvLimitError, match=r"LLDPDU of \d+ bytes over the 1500-byte limit"):
            build_frame(spec(org_tlvs=big))

    @settings(max_examples=60, deadline=None)
    @given(name=st.text(max_size=300), desc=st.text(max_size=300))
    def test_any_text_builds_or_is_refused(self, name: str, desc: str) -> None:
        """Any System Name/Description either builds and round-trips or is refused."""
        try:
            frame = build_frame(spec(system_name=name, system_description=desc))
        except TlvLimitError:
            assert len(name.encode()) > 255 or len(desc.encode()) > 255
            return
        p = parse_frame(frame).lldpdu
        assert len(p.system_name or "") <= 255


class TestHints:
    def test_round_trip(self) -> None:
        """Hints encode and decode to the same record."""
        assert decode_hints(HINTS.encode()) == HINTS

    @pytest.mark.parametrize(
        ("kw", "message"),
        [
            ({"identity": ""}, r"identity must be 1-200 bytes"),
            ({"identity": "x" * 201}, r"identity must be 1-200 bytes"),
            ({"identity": "a\nb"}, r"printable"),
            ({"control_port": 70000}, r"control_port 70000 outside 0-65535"),
            ({"transports": ("TCP",)}, r"transport 'TCP'"),
            ({"transports": ("t",) * 9}, r"9 transports, at most 8"),
            ({"host_token": bytes(33)}, r"host token of 33 bytes"),
            ({"shm_name": "../etc/passwd"}, r"shm name '../etc/passwd'"),
        ],
    )
    def test_bad_values_refused(self, kw: dict[str, object], message: str) -> None:
        """Out-of-range hints are refused when built."""
        with pytest.raises(HintsError, match=message):
            Hints(**{"identity": "a", **kw})  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            (b"", r"truncated at byte 0: header"),
            (b"\x02" + bytes(6), r"version 2 unknown"),
            (HINTS.encode() + b"\x00", r"1 trailing bytes"),
            (HINTS.encode()[:-3], r"truncated"),
            (b"\x01" + bytes(6) + b"\x09", r"9 transports"),
            (b"\x01" + bytes(6) + b"\x01\x02\xff\xfe", r"transport 0 at byte 8 is not ASCII"),
            (b"\x01" + bytes(6) + b"\x00\x00\x00\x00", r"identity must be"),
        ],
    )
    def test_malformed_hints_rejected(self, data: bytes, message: str) -> None:
        """Malformed hints raise HintsError naming the field and offset."""
        with pytest.raises(HintsError, match=message):
            decode_hints(data)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=120))
    def test_fuzz(self, data: bytes) -> None:
        """Random bytes raise HintsError or decode to hints that re-encode to the same bytes."""
        try:
            hints = decode_hints(data)
        except HintsError:
            return
        assert hints.encode() == data
