"""The LLDP agent: send our LLDPDU on each chosen interface, feed received ones to the table.

One thread runs everything: a ``selectors`` loop over one raw ``AF_PACKET`` socket per
interface, bound to ethertype 0x88cc (the kernel filters, so no libpcap and no
promiscuous mode) and joined to the LLDP group 01:80:c2:00:00:0e with
``PACKET_ADD_MEMBERSHIP``. Timers (802.1AB): every ``tx_interval`` seconds, TTL =
min(65535, tx_interval x hold + 1); a new interface first gets ``fast_start`` frames one
second apart. On stop, or when an interface is disabled, a shutdown LLDPDU (TTL 0) goes
out. Interfaces are rescanned every ``scan_interval``: new ones are opened, vanished or
down ones closed and their neighbors forgotten.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import math
import os
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from discovery._errors import InterfaceError
from discovery._ifaces import IfaceInfo, ipv4_address, ipv6_addresses, list_ifaces
from discovery.frames import FrameSpec, build_frame
from discovery.hints import Hints
from discovery.neighbors import NeighborTable
from discovery.tlv import (
    ADDR_IPV4,
    ADDR_IPV6,
    CHASSIS_MAC,
    ETHERTYPE_LLDP,
    LLDP_MULTICAST,
    PORT_IFNAME,
    ManagementAddress,
)

log = logging.getLogger(__name__)

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_MULTICAST = 0
PACKET_OUTGOING = 4
PACKET_STATISTICS = 6  # getsockopt: struct tpacket_stats {packets, drops}, reset on read
SO_RCVBUFFORCE = 33
RCVBUF = 1 << 20  # a burst of ~1000 frames waits here instead of being dropped
IF_INDEX_SUBTYPE = 2  # management address interface numbering: ifIndex
RECV_BURST = 64  # frames read per wake-up per interface, so one link cannot starve others


@dataclass(frozen=True)
class AgentConfig:
    """How the agent behaves. Defaults are 802.1AB's."""

    interfaces: tuple[str, ...] = ()
    """Interface names or fnmatch patterns; empty means every Ethernet interface but lo."""
    tx_interval: float = 30.0
    hold: int = 4
    fast_start: int = 4
    """Frames sent one second apart when an interface is first seen."""
    fast_interval: float = 1.0
    scan_interval: float = 1.0
    """How often interfaces are rescanned and the table expired."""
    chassis: tuple[int, bytes] | None = None
    """(subtype, ID); default: MAC of the first Ethernet interface, else the hostname."""
    system_name: str | None = None
    """Default: the hostname."""
    system_description: str = "pykernel"
    hints: Hints | None = None
    receive_only: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.hold <= 100 or not 0.05 <= self.tx_interval <= 3600:
            raise InterfaceError(
                f"tx_interval {self.tx_interval} (0.05-3600 s) or hold {self.hold} (1-100) "
                "out of range"
            )

    @property
    def ttl(self) -> int:
        """TTL we advertise: min(65535, tx_interval x hold + 1), whole seconds."""
        return min(65535, math.ceil(self.tx_interval * self.hold) + 1)


@dataclass
class _Port:
    info: IfaceInfo
    sock: socket.socket
    next_tx: float
    fast_left: int


@dataclass(frozen=True)
class AgentStats:
    """What the agent did."""

    interfaces: tuple[str, ...] = ()
    """Interfaces currently open."""
    sent: int = 0
    shutdowns_sent: int = 0
    send_errors: int = 0
    received: int = 0
    rx_drops: int = 0
    """Frames the kernel dropped because our socket buffer was full (counted, not lost)."""
    opened: int = 0
    closed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    """Unexpected errors kept by the loop (it never dies of one), by type name."""


def open_lldp_socket(info: IfaceInfo) -> socket.socket:
    """Open a raw socket on ``info`` for ethertype 0x88cc joined to the LLDP group.

    Raises:
        InterfaceError: the socket cannot be opened, bound or joined.

    """
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETHERTYPE_LLDP))
    except OSError as exc:
        raise InterfaceError(f"raw socket for LLDP: {exc.strerror} (needs CAP_NET_RAW)") from exc
    try:
        try:  # root may exceed net.core.rmem_max; others get what it allows
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        sock.bind((info.name, ETHERTYPE_LLDP))
        mreq = struct.pack("iHH8s", info.index, PACKET_MR_MULTICAST, 6, LLDP_MULTICAST)
        sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise InterfaceError(f"interface {info.name}: {exc.strerror}") from exc
    return sock


def management_address(info: IfaceInfo) -> ManagementAddress | None:
    """Return the address peers should probe us at on this interface (IPv4 first)."""
    v4 = ipv4_address(info.name)
    if v4 is not None:
        return ManagementAddress(ADDR_IPV4, v4.packed, IF_INDEX_SUBTYPE, info.index)
    v6 = ipv6_addresses(info.name)
    if v6:
        return ManagementAddress(ADDR_IPV6, v6[0].packed, IF_INDEX_SUBTYPE, info.index)
    return None


def local_frame(
    config: AgentConfig,
    chassis: tuple[int, bytes],
    info: IfaceInfo,
    ttl: int,
    mgmt: ManagementAddress | None = None,
) -> bytes:
    """Build the frame this host sends on ``info`` with ``ttl`` (0: shutdown).

    Raises:
        TlvLimitError: the configuration does not fit 802.1AB's limits.
        ScapyMissingError: scapy is not installed.

    """
    mgmt = mgmt or management_address(info)
    spec = FrameSpec(
        source_mac=info.mac,
        chassis_subtype=chassis[0],
        chassis_id=chassis[1],
        port_subtype=PORT_IFNAME,
        port_id=info.name.encode(),
        ttl=ttl,
        port_description=info.name,
        system_name=config.system_name or socket.gethostname(),
        system_description=config.system_description,
        management_addresses=(mgmt,) if mgmt else (),
        org_tlvs=(config.hints.to_org_tlv(),) if config.hints else (),
    )
    return build_frame(spec)


def default_chassis() -> tuple[int, bytes] | None:
    """Return our chassis ID: MAC of the first Ethernet interface (None if there is none).

    Not the hostname: hosts (and namespaces) often share one, and a peer with our chassis
    ID would be taken for ourselves.
    """
    for info in list_ifaces():
        if info.ethernet and any(info.mac):
            return (CHASSIS_MAC, info.mac)
    return None


class LldpAgent:
    """Runs LLDP on the chosen interfaces in one background thread.

    Args:
        config: timers, interfaces and what we advertise.
        table: where received frames go.
        on_tick: called from the agent thread after every loop turn (e.g. to write state).
        clock: monotonic clock for the timers.

    """

    def __init__(
        self,
        config: AgentConfig,
        table: NeighborTable,
        *,
        on_tick: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.table = table
        self._on_tick = on_tick
        self._clock = clock
        self._ports: dict[str, _Port] = {}
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._stop = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._counts: dict[str, int] = dict.fromkeys(
            ("sent", "shutdowns_sent", "send_errors", "received", "rx_drops", "opened", "closed"),
            0,
        )
        self._errors: dict[str, int] = {}
        self._frames: dict[tuple[object, ...], bytes] = {}
        self._disabled: set[str] = set()
        self._rescan = False
        # Our (subtype, chassis ID); set from the first interface opened if still None.
        self.chassis = config.chassis or default_chassis()
        if self.chassis is not None:
            table.set_own_chassis(self.chassis)
        if not config.receive_only:  # refuse a bad configuration now, not on every send
            check = IfaceInfo("pk-check", 0, bytes(6), True, True)
            local_frame(config, self.chassis or (CHASSIS_MAC, bytes(6)), check, 0)

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> None:
        """Open the interfaces present now and start the agent thread."""
        self._scan()
        self._thread = threading.Thread(target=self._run, name="lldp-agent", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Send shutdown LLDPDUs (TTL 0) on every interface, close them, stop the thread."""
        if self._closed:
            return
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout)
        for name in list(self._ports):
            self._close(name, shutdown=True)
        self._sel.close()
        self._closed = True
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)

    def __enter__(self) -> LldpAgent:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_hints(self, hints: Hints | None) -> None:
        """Advertise new hints, sending them on every interface right away."""
        self.config = replace(self.config, hints=hints)
        with self._lock:
            for port in self._ports.values():
                port.next_tx = 0.0
        self._wake()

    def disable_interface(self, name: str) -> None:
        """Stop LLDP on ``name`` now (sending a shutdown LLDPDU) until re-enabled."""
        with self._lock:
            self._disabled.add(name)
            self._rescan = True
        self._wake()

    def enable_interface(self, name: str) -> None:
        """Undo :meth:`disable_interface` (the interface is opened at once if present)."""
        with self._lock:
            self._disabled.discard(name)
            self._rescan = True
        self._wake()

    def stats(self) -> AgentStats:
        """Return a snapshot of what the agent did."""
        with self._lock:
            return AgentStats(
                interfaces=tuple(sorted(self._ports)), errors=dict(self._errors), **self._counts
            )

    # -- the loop ----------------------------------------------------------------------

    def _wake(self) -> None:
        if self._closed:
            return
        with contextlib.suppress(BlockingIOError):  # pipe full: already woken
            os.write(self._wake_w, b"x")

    def _selected(self) -> tuple[str, ...]:
        if self.config.interfaces:
            return self.config.interfaces
        return tuple(i.name for i in list_ifaces() if i.ethernet)

    def _run(self) -> None:
        next_scan = self._clock() + self.config.scan_interval
        while not self._stop.is_set():
            try:
                now = self._clock()
                with self._lock:
                    due = min((p.next_tx for p in self._ports.values()), default=next_scan)
                timeout = max(0.0, min(due, next_scan) - now)
                for key, _ in self._sel.select(timeout):
                    if key.data is None:
                        os.read(self._wake_r, 4096)
                    else:
                        self._receive(key.data)
                now = self._clock()
                if now >= next_scan or self._rescan:
                    self._rescan = False
                    next_scan = now + self.config.scan_interval
                    self._scan()
                    self.table.expire()
                self._transmit(now)
                if self._on_tick is not None:
                    self._on_tick()
            except Exception as exc:  # the agent never dies of one bad turn
                log.exception("lldp agent loop")
                with self._lock:
                    name = type(exc).__name__
                    self._errors[name] = self._errors.get(name, 0) + 1
                time.sleep(0.05)

    def _receive(self, name: str) -> None:
        port = self._ports.get(name)
        if port is None:
            return
        for _ in range(RECV_BURST):
            try:
                data, addr = port.sock.recvfrom(9216)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. ENETDOWN: the scan will notice
                log.debug("recv on %s: %s", name, exc)
                return
            if addr[2] == PACKET_OUTGOING:
                continue
            with self._lock:
                self._counts["received"] += 1
            self.table.ingest(name, data)

    def _transmit(self, now: float) -> None:
        if self.config.receive_only:
            return
        with self._lock:
            due = [p for p in self._ports.values() if p.next_tx <= now]
        for port in due:
            self._send(port, self.config.ttl)
            if port.fast_left > 0:
                port.fast_left -= 1
                port.next_tx = now + self.config.fast_interval
            else:
                port.next_tx = now + self.config.tx_interval

    def _frame(self, info: IfaceInfo, ttl: int) -> bytes:
        # scapy takes milliseconds per frame: build once per distinct content.
        chassis = self.chassis or (CHASSIS_MAC, info.mac)
        mgmt = management_address(info)
        key = (self.config, chassis, info, ttl, mgmt)
        frame = self._frames.get(key)
        if frame is None:
            if len(self._frames) > 64:
                self._frames.clear()
            frame = self._frames[key] = local_frame(self.config, chassis, info, ttl, mgmt)
        return frame

    def _send(self, port: _Port, ttl: int) -> bool:
        key = "sent" if ttl else "shutdowns_sent"
        try:
            port.sock.send(self._frame(port.info, ttl))
        except OSError as exc:
            log.debug("send on %s: %s", port.info.name, exc)
            with self._lock:
                self._counts["send_errors"] += 1
            return False
        with self._lock:
            self._counts[key] += 1
        return True

    # -- interfaces --------------------------------------------------------------------

    def _count_drops(self, port: _Port) -> None:
        try:
            _, drops = struct.unpack("II", port.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        except OSError:
            return
        if drops:
            with self._lock:
                self._counts["rx_drops"] += drops

    def _scan(self) -> None:
        for port in list(self._ports.values()):
            self._count_drops(port)
        present = {i.name: i for i in list_ifaces()}
        self.table.set_own_macs({i.mac for i in present.values()})
        wanted = set()
        for pattern in self._selected():
            wanted |= {n for n in present if fnmatch.fnmatchcase(n, pattern)}
        with self._lock:
            wanted -= self._disabled
        for name in list(self._ports):
            info = present.get(name)
            if info is None or not info.up or name not in wanted or info.mac != self._ports[
                name
            ].info.mac:
                self._close(name, shutdown=info is not None)
                self.table.drop_interface(name)
        for name in sorted(wanted - set(self._ports)):
            info = present[name]
            if info.up and info.ethernet:
                self._open(info)

    def _open(self, info: IfaceInfo) -> None:
        try:
            sock = open_lldp_socket(info)
        except InterfaceError as exc:
            log.warning("%s", exc)
            return
        if self.chassis is None:  # started without interfaces: the first one names us
            self.chassis = (CHASSIS_MAC, info.mac)
            self.table.set_own_chassis(self.chassis)
        port = _Port(info, sock, next_tx=0.0, fast_left=max(0, self.config.fast_start - 1))
        with self._lock:
            self._ports[info.name] = port
            self._counts["opened"] += 1
        self._sel.register(sock, selectors.EVENT_READ, info.name)

    def _close(self, name: str, *, shutdown: bool) -> None:
        with self._lock:
            port = self._ports.pop(name, None)
            if port is not None:
                self._counts["closed"] += 1
        if port is None:
            return
        if shutdown and not self.config.receive_only:
            self._send(port, 0)
        self._count_drops(port)
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(port.sock)
        port.sock.close()
