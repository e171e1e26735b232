"""What the agent needs to know about local interfaces, read from /sys and ioctls."""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

SYS_NET = Path("/sys/class/net")
ARPHRD_ETHER = 1
IFF_UP = 0x1
SIOCGIFADDR = 0x8915
SIOCGIFNETMASK = 0x891B


@dataclass(frozen=True)
class IfaceInfo:
    """One local interface as seen now."""

    name: str
    index: int
    mac: bytes
    up: bool
    """Administratively up with a carrier (operstate not down)."""
    ethernet: bool
    """ARPHRD_ETHER: LLDP makes sense here (not loopback, not a tunnel)."""


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def iface_info(name: str, index: int) -> IfaceInfo | None:
    """Describe interface ``name``, or None if it vanished meanwhile."""
    base = SYS_NET / name
    mac_text = _read(base / "address")
    if not mac_text:
        return None
    try:
        mac = bytes.fromhex(mac_text.replace(":", ""))
        flags = int(_read(base / "flags") or "0", 16)
        kind = int(_read(base / "type") or "0")
    except ValueError:
        return None
    oper = _read(base / "operstate")
    up = bool(flags & IFF_UP) and oper in ("up", "unknown")
    return IfaceInfo(name, index, mac, up, kind == ARPHRD_ETHER and len(mac) == 6)


def list_ifaces() -> list[IfaceInfo]:
    """Return every interface of this network namespace, by index."""
    out = []
    for index, name in sorted(socket.if_nameindex()):
        info = iface_info(name, index)
        if info is not None:
            out.append(info)
    return out


def _ioctl_v4(name: str, request: int) -> ipaddress.IPv4Address | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            res = fcntl.ioctl(s.fileno(), request, struct.pack("256s", name.encode()[:15]))
        except OSError:
            return None
    return ipaddress.IPv4Address(res[20:24])


def ipv4_address(name: str) -> ipaddress.IPv4Address | None:
    """Return the primary IPv4 address of ``name``, or None."""
    return _ioctl_v4(name, SIOCGIFADDR)


def on_link(name: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether ``ip`` is directly on interface ``name``'s link (its subnet, or link-local).

    Discovery only ever contacts such addresses: a neighbor's frame cannot make us probe
    somewhere else.
    """
    if ip.version == 6:
        if ip.is_link_local:
            return True
        with contextlib.suppress(OSError), open("/proc/net/if_inet6") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and parts[5] == name:
                    net = ipaddress.IPv6Network((bytes.fromhex(parts[0]), int(parts[2], 16)),
                                                strict=False)  # fmt: skip
                    if ip in net:
                        return True
        return False
    addr, mask = ipv4_address(name), _ioctl_v4(name, SIOCGIFNETMASK)
    if addr is None or mask is None:
        return False
    return ip in ipaddress.IPv4Network(f"{addr}/{mask}", strict=False)


def ipv6_addresses(name: str) -> list[ipaddress.IPv6Address]:
    """Return the IPv6 addresses of ``name`` (global ones first)."""
    found = []
    with contextlib.suppress(OSError), open("/proc/net/if_inet6") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and parts[5] == name:
                found.append(ipaddress.IPv6Address(bytes.fromhex(parts[0])))
    return sorted(found, key=lambda a: a.is_link_local)
