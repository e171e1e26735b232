"""Our LLDPDU parser: valid frames, every kind of malformed one, and fuzzing."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from discovery import FrameError
from discovery.tlv import (
    TLV_CHASSIS_ID,
    TLV_MANAGEMENT_ADDRESS,
    TLV_ORGANIZATIONAL,
    TLV_PORT_ID,
    TLV_SYSTEM_NAME,
    TLV_TTL,
    encode_tlv,
    parse_frame,
    parse_lldpdu,
    walk,
)

MAC = bytes.fromhex("020000000001")
CHASSIS = encode_tlv(TLV_CHASSIS_ID, b"\x04" + MAC)
PORT = encode_tlv(TLV_PORT_ID, b"\x05eth0")
TTL = encode_tlv(TLV_TTL, struct.pack("!H", 120))
END = b"\x00\x00"
MGMT = encode_tlv(TLV_MANAGEMENT_ADDRESS, bytes([5, 1, 10, 0, 0, 1, 2, 0, 0, 0, 3, 0]))


def pdu(*tlvs: bytes, end: bool = True) -> bytes:
    return b"".join(tlvs) + (END if end else b"")


def ether(payload: bytes, dst: str = "0180c200000e") -> bytes:
    return bytes.fromhex(dst) + MAC + b"\x88\xcc" + payload


VALID = pdu(CHASSIS, PORT, TTL, encode_tlv(TLV_SYSTEM_NAME, b"host-a"), MGMT)


class TestValid:
    def test_mandatory_and_optional_fields(self) -> None:
        """A well-formed LLDPDU yields every field as text."""
        p = parse_lldpdu(VALID)
        assert (p.chassis_text(), p.port_text(), p.ttl) == ("02:00:00:00:00:01", "eth0", 120)
        assert p.system_name == "host-a"
        assert [m.text() for m in p.management_addresses] == ["10.0.0.1"]

    def test_end_is_optional_and_bytes_after_it_ignored(self) -> None:
        """802.1AB-2016: End may be missing; what follows End is ignored."""
        assert parse_lldpdu(pdu(CHASSIS, PORT, TTL, end=False)).ttl == 120
        assert parse_lldpdu(pdu(CHASSIS, PORT, TTL) + b"\xff\xff\xff").ttl == 120

    def test_reserved_types_are_skipped_and_counted(self) -> None:
        """Reserved TLV types 9-126 are skipped by length, and parsing goes on after them."""
        p = parse_lldpdu(pdu(CHASSIS, PORT, TTL, encode_tlv(9, b"x"), encode_tlv(126, b""),
                             encode_tlv(TLV_SYSTEM_NAME, b"after")))  # fmt: skip
        assert (p.unrecognized, p.system_name) == (2, "after")

    def test_organizational_tlvs_are_kept_raw(self) -> None:
        """Unknown organizational TLVs are kept (OUI, subtype, data), several allowed."""
        org = encode_tlv(TLV_ORGANIZATIONAL, b"\x00\x12\x0f\x02abc")
        p = parse_lldpdu(pdu(CHASSIS, PORT, TTL, org, org))
        assert [(o.oui.hex(), o.subtype, o.data) for o in p.org_tlvs] == [("00120f", 2, b"abc")] * 2

    def test_control_characters_are_neutralised(self) -> None:
        """Peer text never reaches a terminal raw: control characters become '?'."""
        p = parse_lldpdu(pdu(CHASSIS, PORT, TTL, encode_tlv(TLV_SYSTEM_NAME, b"a\x1b[2Jb\xff")))
        assert p.system_name == "a?[2Jb\ufffd"

    def test_vlan_tagged_frame(self) -> None:
        """An 802.1Q-tagged LLDP frame is accepted."""
        frame = bytes.fromhex("0180c200000e") + MAC + b"\x81\x00\x00\x05\x88\xcc" + VALID
        assert parse_frame(frame).lldpdu.ttl == 120


REJECTS = {
    "one stray byte": (pdu(CHASSIS, PORT, TTL, end=False) + b"\x02", "truncated"),
    "length past the end": (pdu(CHASSIS, PORT, TTL, end=False) + b"\x0a\x10abc", "bad-length"),
    "End with a length": (pdu(CHASSIS, PORT, TTL, end=False) + b"\x00\x01x", "bad-length"),
    "port before chassis": (pdu(PORT, CHASSIS, TTL), "order"),
    "TTL missing": (pdu(CHASSIS, PORT), "order"),
    "empty": (b"", "order"),
    "only End": (END, "order"),
    "duplicate TTL": (pdu(CHASSIS, PORT, TTL, TTL), "duplicate"),
    "duplicate chassis later": (pdu(CHASSIS, PORT, TTL, CHASSIS), "duplicate"),
    "duplicate system name": (
        pdu(CHASSIS, PORT, TTL, encode_tlv(5, b"a"), encode_tlv(5, b"b")), "duplicate"),
    "chassis subtype 0": (pdu(encode_tlv(1, b"\x00abc"), PORT, TTL), "bad-subtype"),
    "chassis subtype 8": (pdu(encode_tlv(1, b"\x08abc"), PORT, TTL), "bad-subtype"),
    "empty chassis ID": (pdu(encode_tlv(1, b"\x04"), PORT, TTL), "bad-length"),
    "chassis ID of 256 bytes": (pdu(encode_tlv(1, b"\x07" + b"x" * 256), PORT, TTL), "bad-length"),
    "3-byte TTL": (pdu(CHASSIS, PORT, encode_tlv(3, b"\x00\x00\x78")), "bad-length"),
    "system name of 300 bytes": (pdu(CHASSIS, PORT, TTL, encode_tlv(5, b"n" * 300)), "bad-length"),
    "short capabilities": (pdu(CHASSIS, PORT, TTL, encode_tlv(7, b"\x00\x80")), "bad-length"),
    "org TLV of 3 bytes": (pdu(CHASSIS, PORT, TTL, encode_tlv(127, b"\x00\x12\x0f")), "bad-length"),
    "management address cut": (
        pdu(CHASSIS, PORT, TTL, encode_tlv(8, b"\x05\x01\x0a")), "bad-length"),
    "management address length lies": (
        pdu(CHASSIS, PORT, TTL, encode_tlv(8, bytes([40, 1]) + bytes(12))), "bad-length"),
    "over 1500 bytes": (pdu(CHASSIS, PORT, TTL) + bytes(1500), "too-long"),
}  # fmt: skip


class TestRejected:
    @pytest.mark.parametrize("name", sorted(REJECTS))
    def test_malformed_lldpdu_is_a_typed_rejection(self, name: str) -> None:
        """Each malformed LLDPDU raises FrameError with a stable reason."""
        data, reason = REJECTS[name]
        with pytest.raises(FrameError, match=rf"\({reason}\) at byte \d+") as info:
            parse_lldpdu(data)
        assert info.value.reason == reason

    def test_truncation_at_every_length(self) -> None:
        """Every strict prefix of a valid LLDPDU cutting a TLV is rejected, never crashes."""
        for n in range(len(VALID)):
            try:
                parse_lldpdu(VALID[:n])
            except FrameError as exc:
                assert exc.reason in {"truncated", "bad-length", "order"}

    def test_not_lldp_and_wrong_destination(self) -> None:
        """Frames of another ethertype, to a unicast MAC, or cut short are rejected."""
        with pytest.raises(FrameError, match="not-lldp"):
            parse_frame(bytes.fromhex("0180c200000e") + MAC + b"\x08\x00" + VALID)
        with pytest.raises(FrameError, match=r"bad-destination.*02:00:00:00:00:09"):
            parse_frame(ether(VALID, dst="020000000009"))
        with pytest.raises(FrameError, match="truncated"):
            parse_frame(b"\x01\x80")

    def test_walk_names_the_offset(self) -> None:
        """The offset in a rejection points at the TLV header at fault."""
        bad = pdu(CHASSIS, PORT, TTL, end=False) + b"\x0a\x10abc"
        with pytest.raises(FrameError) as info:
            list(walk(bad))
        assert info.value.offset == len(CHASSIS + PORT + TTL)


class TestFuzz:
    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.binary(max_size=1600))
    def test_random_bytes_parse_or_reject(self, data: bytes) -> None:
        """Any bytes either parse or raise FrameError; nothing else escapes."""
        try:
            parse_frame(data)
        except FrameError as exc:
            assert exc.reason

    @settings(max_examples=400, deadline=None)
    @given(
        st.lists(
            st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=6
        ),
        st.integers(0, len(VALID)),
    )
    def test_mutated_valid_frames_parse_or_reject(
        self, flips: list[tuple[int, int]], cut: int
    ) -> None:
        """Byte flips and truncations of a valid frame parse or are typed rejections."""
        data = bytearray(VALID)
        for pos, value in flips:
            data[pos] = value
        try:
            parse_lldpdu(bytes(data[: max(cut, 1)]))
        except FrameError as exc:
            assert exc.reason in {
                "truncated", "bad-length", "order", "duplicate", "bad-subtype", "too-long"
            }  # fmt: skip

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.tuples(st.integers(0, 127), st.binary(max_size=40)), max_size=12))
    def test_random_tlv_sequences(self, tlvs: list[tuple[int, bytes]]) -> None:
        """Well-framed TLVs of random types and values after a valid header never crash."""
        body = pdu(CHASSIS, PORT, TTL, *(encode_tlv(t, v) for t, v in tlvs if t), end=False)
        try:
            p = parse_lldpdu(body)
        except FrameError:
            return
        assert p.unrecognized == sum(1 for t, _ in tlvs if 9 <= t <= 126)
