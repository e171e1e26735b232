"""Our own 802.1AB TLV walker and LLDPDU parser over plain bytes.

Why not scapy for parsing: its strict LLDP mode keeps state in class globals (not
thread-safe), a reserved TLV type stops it, and a bad frame silently becomes ``Raw``.
This walker never raises anything but :class:`~discovery.FrameError`, whose ``reason`` is
a stable word the neighbor table counts.

Rules (802.1AB-2016): Chassis ID, Port ID, TTL first, in that order, exactly once; the
once-only optional TLVs (4-7) at most once; End optional, bytes after it ignored; reserved
types 9-126 skipped and counted as unrecognized; organizational TLVs (127) kept raw.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from discovery._errors import FrameError, TlvLimitError

TLV_END = 0
TLV_CHASSIS_ID = 1
TLV_PORT_ID = 2
TLV_TTL = 3
TLV_PORT_DESCRIPTION = 4
TLV_SYSTEM_NAME = 5
TLV_SYSTEM_DESCRIPTION = 6
TLV_SYSTEM_CAPABILITIES = 7
TLV_MANAGEMENT_ADDRESS = 8
TLV_ORGANIZATIONAL = 127

MAX_TLV_LENGTH = 511  # 9-bit length field
MAX_LLDPDU = 1500  # an LLDPDU must fit one standard frame
MAX_ID = 255  # Chassis/Port ID bytes after the subtype
MAX_TEXT = 255  # port/system name/description
MAX_ORG_DATA = 507  # 511 - OUI (3) - subtype (1)
MAX_MGMT_ADDRESS = 31  # address bytes after the address subtype
MAX_OID = 128

ETHERTYPE_LLDP = 0x88CC
ETHERTYPE_VLAN = 0x8100
# Nearest bridge, nearest non-TPMR bridge, nearest customer bridge.
LLDP_GROUP_MACS = frozenset(
    bytes.fromhex(h) for h in ("0180c200000e", "0180c2000003", "0180c2000000")
)
LLDP_MULTICAST = bytes.fromhex("0180c200000e")

CHASSIS_MAC = 4  # chassis ID subtype: MAC address
PORT_MAC = 3  # port ID subtype: MAC address
PORT_IFNAME = 5  # port ID subtype: interface name
CHASSIS_LOCAL = 7  # chassis ID subtype: locally assigned
PORT_LOCAL = 7
CHASSIS_NETWORK = 5  # chassis ID subtype: IANA family + address
PORT_NETWORK = 4  # port ID subtype: IANA family + address

ADDR_IPV4 = 1  # IANA address family numbers used in management addresses
ADDR_IPV6 = 2
ADDR_MAC = 6

_ONCE_ONLY = {
    TLV_CHASSIS_ID: "Chassis ID",
    TLV_PORT_ID: "Port ID",
    TLV_TTL: "TTL",
    TLV_PORT_DESCRIPTION: "Port Description",
    TLV_SYSTEM_NAME: "System Name",
    TLV_SYSTEM_DESCRIPTION: "System Description",
    TLV_SYSTEM_CAPABILITIES: "System Capabilities",
}


@dataclass(frozen=True)
class Tlv:
    """One TLV as found on the wire."""

    type: int
    """TLV type (0-127)."""
    offset: int
    """Byte offset of its 2-byte header inside the LLDPDU."""
    value: bytes
    """The value bytes (length given by the header)."""


@dataclass(frozen=True)
class ManagementAddress:
    """A Management Address TLV (type 8)."""

    family: int
    """IANA address family (1 IPv4, 2 IPv6, 6 MAC, ...)."""
    address: bytes
    """The raw address bytes."""
    if_subtype: int
    """Interface numbering subtype (1 unknown, 2 ifIndex, 3 system port number)."""
    if_number: int
    """Interface number in that numbering."""

    def text(self) -> str:
        """Return the address as text: dotted IPv4, IPv6, ``aa:bb:..`` MAC, else hex."""
        if self.family == ADDR_IPV4 and len(self.address) == 4:
            return str(ipaddress.IPv4Address(self.address))
        if self.family == ADDR_IPV6 and len(self.address) == 16:
            return str(ipaddress.IPv6Address(self.address))
        if self.family == ADDR_MAC and len(self.address) == 6:
            return mac_text(self.address)
        return self.address.hex()


@dataclass(frozen=True)
class OrgTlv:
    """An organizationally specific TLV (type 127), kept raw."""

    oui: bytes
    """3-byte OUI or CID."""
    subtype: int
    """Organizationally defined subtype."""
    data: bytes
    """Information string (0-507 bytes)."""


@dataclass(frozen=True)
class Lldpdu:
    """A parsed, validated LLDPDU. Every text field is untrusted peer input."""

    chassis_subtype: int
    chassis_id: bytes
    port_subtype: int
    port_id: bytes
    ttl: int
    """Seconds the information stays valid; 0 means "shutdown: forget me now"."""
    port_description: str | None = None
    system_name: str | None = None
    system_description: str | None = None
    capabilities: tuple[int, int] | None = None
    """(system capabilities, enabled capabilities) bit masks."""
    management_addresses: tuple[ManagementAddress, ...] = ()
    org_tlvs: tuple[OrgTlv, ...] = ()
    unrecognized: int = 0
    """Reserved-type TLVs (9-126) skipped."""

    def chassis_text(self) -> str:
        """Return the chassis ID as display text (MAC, address, or printable string)."""
        return id_text(self.chassis_subtype, self.chassis_id, CHASSIS_MAC, CHASSIS_NETWORK)

    def port_text(self) -> str:
        """Return the port ID as display text (MAC, or printable string)."""
        return id_text(self.port_subtype, self.port_id, PORT_MAC, PORT_NETWORK)


def mac_text(mac: bytes) -> str:
    """Format MAC bytes as ``aa:bb:cc:dd:ee:ff``."""
    return ":".join(f"{b:02x}" for b in mac)


def printable(raw: bytes) -> str:
    """Decode untrusted bytes as UTF-8 with every control character shown as ``?``."""
    text = raw.decode("utf-8", errors="replace")
    return "".join(c if c.isprintable() else "?" for c in text)


def id_text(subtype: int, raw: bytes, mac_subtype: int, network_subtype: int) -> str:
    """Display text for a chassis or port ID of the given subtype."""
    if subtype == mac_subtype and len(raw) == 6:
        return mac_text(raw)
    if subtype == network_subtype and len(raw) >= 1:
        return ManagementAddress(raw[0], raw[1:], 1, 0).text()
    return printable(raw)


def walk(data: bytes) -> Iterator[Tlv]:
    """Yield each TLV of an LLDPDU up to (not including) End or the end of the data.

    Raises:
        FrameError: ``truncated`` (a header cut short) or ``bad-length`` (a length running
            past the end of the data, or an End TLV with a non-zero length).

    """
    pos = 0
    end = len(data)
    while pos < end:
        if end - pos < 2:
            raise FrameError("truncated", pos, "one byte left where a TLV header needs two")
        (header,) = struct.unpack_from("!H", data, pos)
        tlv_type, length = header >> 9, header & 0x1FF
        if tlv_type == TLV_END:
            if length != 0:
                raise FrameError("bad-length", pos, f"End TLV with length {length}")
            return
        if pos + 2 + length > end:
            raise FrameError(
                "bad-length", pos, f"TLV type {tlv_type} length {length} runs past the end"
            )
        yield Tlv(tlv_type, pos, bytes(data[pos + 2 : pos + 2 + length]))
        pos += 2 + length


def _need(ok: bool, tlv: Tlv, detail: str) -> None:
    if not ok:
        raise FrameError("bad-length", tlv.offset, detail)


def _parse_id(tlv: Tlv, what: str) -> tuple[int, bytes]:
    _need(2 <= len(tlv.value) <= MAX_ID + 1, tlv, f"{what} length {len(tlv.value)} not 2-256")
    subtype = tlv.value[0]
    if not 1 <= subtype <= 7:
        raise FrameError("bad-subtype", tlv.offset, f"{what} subtype {subtype} is reserved")
    return subtype, tlv.value[1:]


def _parse_text(tlv: Tlv, what: str) -> str:
    _need(len(tlv.value) <= MAX_TEXT, tlv, f"{what} length {len(tlv.value)} over {MAX_TEXT}")
    return printable(tlv.value)


def _parse_mgmt(tlv: Tlv) -> ManagementAddress:
    v = tlv.value
    _need(len(v) >= 9, tlv, f"Management Address length {len(v)} under 9")
    alen = v[0]
    _need(2 <= alen <= MAX_MGMT_ADDRESS + 1, tlv, f"management address string length {alen}")
    _need(len(v) >= 1 + alen + 5 + 1, tlv, "management address string runs past the TLV")
    family, address = v[1], v[2 : 1 + alen]
    if_subtype, if_number = struct.unpack_from("!BI", v, 1 + alen)
    oid_len = v[1 + alen + 5]
    _need(oid_len <= MAX_OID, tlv, f"OID length {oid_len} over {MAX_OID}")
    _need(len(v) == 1 + alen + 5 + 1 + oid_len, tlv, "Management Address length mismatch")
    return ManagementAddress(family, bytes(address), if_subtype, if_number)


def parse_lldpdu(data: bytes) -> Lldpdu:
    """Parse and validate an LLDPDU (the Ethernet payload).

    Raises:
        FrameError: with reason ``too-long``, ``truncated``, ``bad-length``, ``order``
            (mandatory TLVs missing or out of order), ``duplicate`` or ``bad-subtype``.

    """
    if len(data) > MAX_LLDPDU:
        raise FrameError("too-long", MAX_LLDPDU, f"LLDPDU of {len(data)} bytes")
    seen: set[int] = set()
    fields: dict[str, object] = {}
    mgmt: list[ManagementAddress] = []
    orgs: list[OrgTlv] = []
    unrecognized = 0
    mandatory = (TLV_CHASSIS_ID, TLV_PORT_ID, TLV_TTL)
    index = 0
    for index, tlv in enumerate(walk(data)):
        if index < 3 and tlv.type != mandatory[index]:
            raise FrameError(
                "order", tlv.offset, f"TLV {index + 1} is type {tlv.type}, not {mandatory[index]}"
            )
        if tlv.type in _ONCE_ONLY:
            if tlv.type in seen:
                raise FrameError("duplicate", tlv.offset, f"second {_ONCE_ONLY[tlv.type]} TLV")
            seen.add(tlv.type)
        if tlv.type == TLV_CHASSIS_ID:
            fields["chassis_subtype"], fields["chassis_id"] = _parse_id(tlv, "Chassis ID")
        elif tlv.type == TLV_PORT_ID:
            fields["port_subtype"], fields["port_id"] = _parse_id(tlv, "Port ID")
        elif tlv.type == TLV_TTL:
            _need(len(tlv.value) == 2, tlv, f"TTL length {len(tlv.value)}, not 2")
            (fields["ttl"],) = struct.unpack("!H", tlv.value)
        elif tlv.type == TLV_PORT_DESCRIPTION:
            fields["port_description"] = _parse_text(tlv, "Port Description")
        elif tlv.type == TLV_SYSTEM_NAME:
            fields["system_name"] = _parse_text(tlv, "System Name")
        elif tlv.type == TLV_SYSTEM_DESCRIPTION:
            fields["system_description"] = _parse_text(tlv, "System Description")
        elif tlv.type == TLV_SYSTEM_CAPABILITIES:
            _need(len(tlv.value) == 4, tlv, f"capabilities length {len(tlv.value)}, not 4")
            fields["capabilities"] = struct.unpack("!HH", tlv.value)
        elif tlv.type == TLV_MANAGEMENT_ADDRESS:
            mgmt.append(_parse_mgmt(tlv))
        elif tlv.type == TLV_ORGANIZATIONAL:
            _need(len(tlv.value) >= 4, tlv, f"organizational TLV length {len(tlv.value)} under 4")
            orgs.append(OrgTlv(tlv.value[:3], tlv.value[3], tlv.value[4:]))
        else:
            unrecognized += 1  # reserved types 9-126: skip by length, keep going
    if len(seen & set(mandatory)) < 3:
        missing = [_ONCE_ONLY[t] for t in mandatory if t not in seen]
        raise FrameError("order", len(data), f"missing mandatory {', '.join(missing)}")
    return Lldpdu(
        management_addresses=tuple(mgmt),
        org_tlvs=tuple(orgs),
        unrecognized=unrecognized,
        **fields,  # type: ignore[arg-type]
    )


@dataclass(frozen=True)
class EthernetLldp:
    """An LLDP Ethernet frame: addresses plus the parsed LLDPDU."""

    source: bytes
    destination: bytes
    lldpdu: Lldpdu


def parse_frame(frame: bytes) -> EthernetLldp:
    """Parse a whole Ethernet frame carrying an LLDPDU (an 802.1Q tag is allowed).

    Raises:
        FrameError: ``truncated``, ``not-lldp``, ``bad-destination`` or any reason from
            :func:`parse_lldpdu` (offsets are then relative to the LLDPDU).

    """
    if len(frame) < 14:
        raise FrameError("truncated", 0, f"Ethernet frame of {len(frame)} bytes")
    dst, src = bytes(frame[0:6]), bytes(frame[6:12])
    (ethertype,) = struct.unpack_from("!H", frame, 12)
    start = 14
    if ethertype == ETHERTYPE_VLAN:
        if len(frame) < 18:
            raise FrameError("truncated", 14, "802.1Q tag cut short")
        (ethertype,) = struct.unpack_from("!H", frame, 16)
        start = 18
    if ethertype != ETHERTYPE_LLDP:
        raise FrameError("not-lldp", 12, f"ethertype 0x{ethertype:04x}")
    if dst not in LLDP_GROUP_MACS:
        raise FrameError("bad-destination", 0, f"destination {mac_text(dst)} is not LLDP's")
    return EthernetLldp(src, dst, parse_lldpdu(frame[start:]))


def encode_tlv(tlv_type: int, value: bytes) -> bytes:
    """Encode one TLV, refusing what the 7-bit type / 9-bit length cannot carry.

    Raises:
        TlvLimitError: type outside 0-127 or value longer than 511 bytes.

    """
    if not 0 <= tlv_type <= 127:
        raise TlvLimitError(f"TLV type {tlv_type} outside 0-127")
    if len(value) > MAX_TLV_LENGTH:
        raise TlvLimitError(
            f"TLV type {tlv_type}: value of {len(value)} bytes over the {MAX_TLV_LENGTH}-byte limit"
        )
    return struct.pack("!H", tlv_type << 9 | len(value)) + value
