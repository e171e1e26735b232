"""Build 802.1AB LLDP frames with scapy, refusing values over the TLV limits first.

scapy silently overflows the 9-bit TLV length (a 512-byte system name encodes length 0),
so every field is checked here before scapy sees it, and the built bytes are parsed back
with our own walker (:mod:`discovery.tlv`) as a final guard. scapy is imported lazily:
without it, :func:`build_frame` raises :class:`~discovery.ScapyMissingError` and the rest
of discovery (parsing, the table, probe, beacon) still works.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from discovery._errors import FrameError, ScapyMissingError, TlvLimitError
from discovery.tlv import (
    CHASSIS_MAC,
    CHASSIS_NETWORK,
    ETHERTYPE_LLDP,
    LLDP_MULTICAST,
    MAX_ID,
    MAX_LLDPDU,
    MAX_MGMT_ADDRESS,
    MAX_ORG_DATA,
    MAX_TEXT,
    PORT_MAC,
    PORT_NETWORK,
    ManagementAddress,
    OrgTlv,
    mac_text,
    parse_frame,
)

CAP_STATION_ONLY = 0x0080


@dataclass(frozen=True)
class FrameSpec:
    """Everything one LLDPDU says; checked against 802.1AB limits by :func:`build_frame`."""

    source_mac: bytes
    """6-byte source MAC (the sending interface's)."""
    chassis_subtype: int
    chassis_id: bytes
    port_subtype: int
    port_id: bytes
    ttl: int
    """Seconds; 0 is the shutdown LLDPDU."""
    port_description: str | None = None
    system_name: str | None = None
    system_description: str | None = None
    capabilities: tuple[int, int] | None = (CAP_STATION_ONLY, CAP_STATION_ONLY)
    management_addresses: tuple[ManagementAddress, ...] = ()
    org_tlvs: tuple[OrgTlv, ...] = ()


@functools.cache
def _scapy() -> tuple[ModuleType, Any]:
    try:
        from scapy.config import conf
        from scapy.contrib import lldp
        from scapy.layers.l2 import Ether
    except ImportError as exc:
        raise ScapyMissingError() from exc
    # Strict mode keeps parse state in class globals; we validate ourselves instead.
    conf.contribs["LLDP"].strict_mode_disable()
    return lldp, Ether


def require_scapy() -> None:
    """Fail early, with one clear line, when scapy is missing.

    Raises:
        ScapyMissingError: scapy cannot be imported.

    """
    _scapy()


def scapy_available() -> bool:
    """Whether scapy can be imported (frames can be built)."""
    try:
        _scapy()
    except ScapyMissingError:
        return False
    return True


def _check_id(what: str, subtype: int, raw: bytes, network_subtype: int) -> None:
    if not 1 <= subtype <= 7:
        raise TlvLimitError(f"{what} subtype {subtype} outside 1-7")
    if not 1 <= len(raw) <= MAX_ID:
        raise TlvLimitError(f"{what} of {len(raw)} bytes, must be 1-{MAX_ID}")
    if subtype == network_subtype and (raw[0], len(raw)) not in ((1, 5), (2, 17)):
        raise TlvLimitError(f"{what} network address must be IPv4 (family 1) or IPv6 (family 2)")


def _check_text(what: str, text: str | None) -> bytes | None:
    if text is None:
        return None
    raw = text.encode("utf-8")
    if len(raw) > MAX_TEXT:
        raise TlvLimitError(f"{what} of {len(raw)} bytes over the {MAX_TEXT}-byte limit")
    return raw


def check_spec(spec: FrameSpec) -> None:
    """Refuse any value over an 802.1AB limit, naming the field.

    Raises:
        TlvLimitError: the first field out of range.

    """
    if len(spec.source_mac) != 6:
        raise TlvLimitError(f"source MAC of {len(spec.source_mac)} bytes, not 6")
    _check_id("Chassis ID", spec.chassis_subtype, spec.chassis_id, CHASSIS_NETWORK)
    _check_id("Port ID", spec.port_subtype, spec.port_id, PORT_NETWORK)
    if not 0 <= spec.ttl <= 65535:
        raise TlvLimitError(f"TTL {spec.ttl} outside 0-65535")
    _check_text("Port Description", spec.port_description)
    _check_text("System Name", spec.system_name)
    _check_text("System Description", spec.system_description)
    if spec.capabilities is not None and not all(0 <= c <= 0xFFFF for c in spec.capabilities):
        raise TlvLimitError(f"capabilities {spec.capabilities} outside 16 bits")
    for m in spec.management_addresses:
        if not 1 <= len(m.address) <= MAX_MGMT_ADDRESS:
            raise TlvLimitError(f"management address of {len(m.address)} bytes, must be 1-31")
        if not 0 <= m.family <= 255 or not 0 <= m.if_number <= 0xFFFFFFFF:
            raise TlvLimitError(f"management address family/interface out of range: {m}")
    for o in spec.org_tlvs:
        if len(o.oui) != 3 or not 0 <= o.subtype <= 255:
            raise TlvLimitError(f"organizational TLV OUI {o.oui.hex()} / subtype {o.subtype}")
        if len(o.data) > MAX_ORG_DATA:
            raise TlvLimitError(
                f"organizational TLV {o.oui.hex()}/{o.subtype}: {len(o.data)} bytes over "
                f"the {MAX_ORG_DATA}-byte limit"
            )


def _id_layer(cls: Any, subtype: int, raw: bytes, mac_subtype: int, network_subtype: int) -> Any:
    if subtype == mac_subtype and len(raw) == 6:
        return cls(subtype=subtype, id=mac_text(raw))
    if subtype == network_subtype:  # scapy wants the address as text here
        return cls(subtype=subtype, family=raw[0], id=str(ipaddress.ip_address(raw[1:])))
    return cls(subtype=subtype, id=raw)


def build_frame(spec: FrameSpec) -> bytes:
    """Build the Ethernet frame (to 01:80:c2:00:00:0e) for ``spec``.

    Raises:
        TlvLimitError: a field over its 802.1AB limit, or an LLDPDU over 1500 bytes.
        ScapyMissingError: scapy is not installed.

    """
    check_spec(spec)
    lldp, ether_cls = _scapy()
    pkt = ether_cls(
        dst=mac_text(LLDP_MULTICAST), src=mac_text(spec.source_mac), type=ETHERTYPE_LLDP
    )
    pkt /= _id_layer(
        lldp.LLDPDUChassisID, spec.chassis_subtype, spec.chassis_id, CHASSIS_MAC, CHASSIS_NETWORK
    )
    pkt /= _id_layer(lldp.LLDPDUPortID, spec.port_subtype, spec.port_id, PORT_MAC, PORT_NETWORK)
    pkt /= lldp.LLDPDUTimeToLive(ttl=spec.ttl)
    if spec.port_description is not None:
        pkt /= lldp.LLDPDUPortDescription(description=spec.port_description.encode())
    if spec.system_name is not None:
        pkt /= lldp.LLDPDUSystemName(system_name=spec.system_name.encode())
    if spec.system_description is not None:
        pkt /= lldp.LLDPDUSystemDescription(description=spec.system_description.encode())
    if spec.capabilities is not None:
        pkt /= _capabilities(lldp, *spec.capabilities)
    for m in spec.management_addresses:
        pkt /= lldp.LLDPDUManagementAddress(
            management_address_subtype=m.family,
            management_address=m.address,
            interface_numbering_subtype=m.if_subtype,
            interface_number=m.if_number,
        )
    for o in spec.org_tlvs:
        pkt /= lldp.LLDPDUGenericOrganisationSpecific(
            org_code=int.from_bytes(o.oui, "big"), subtype=o.subtype, data=o.data
        )
    pkt /= lldp.LLDPDUEndOfLLDPDU()
    frame = bytes(pkt)
    if len(frame) - 14 > MAX_LLDPDU:
        raise TlvLimitError(f"LLDPDU of {len(frame) - 14} bytes over the {MAX_LLDPDU}-byte limit")
    try:  # our walker is the judge of what went on the wire
        parse_frame(frame)
    except FrameError as exc:  # pragma: no cover - would be a scapy encoding bug
        raise TlvLimitError(f"built frame does not parse back: {exc}") from exc
    return frame


_CAP_NAMES = (
    "other", "repeater", "mac_bridge", "wlan_access_point", "router", "telephone",
    "docsis_cable_device", "station_only", "c_vlan_component", "s_vlan_component",
    "two_port_mac_relay",
)  # fmt: skip


def _capabilities(lldp: Any, available: int, enabled: int) -> Any:
    kwargs = {}
    for bit, name in enumerate(_CAP_NAMES):
        kwargs[f"{name}_available"] = (available >> bit) & 1
        kwargs[f"{name}_enabled"] = (enabled >> bit) & 1
    return lldp.LLDPDUSystemCapabilities(**kwargs)
