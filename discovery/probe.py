"""Probe: test the ports and transports a neighbor's hints advertise; success and RTT.

- ``tcp``: connect to the control surface port, then close.
- ``udp``: send a 20-byte token to the echo port and wait for the same bytes back.
- ``shm``: only when both hosts' tokens match (same machine): open the neighbor's probe
  segment under /dev/shm and check it names the advertised identity.

Hints are untrusted input: the probe only connects to the address the neighbor's own
frame gave, on the link it arrived on, and a failure is a result, not an exception.
The echo server answers only well-formed probe datagrams, with exactly as many bytes as
it received (no amplification).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from discovery._errors import ProbeError
from discovery.hints import Hints
from pykernel.liveness import pid_alive

ECHO_MAGIC = b"PKE1"
ECHO_SIZE = len(ECHO_MAGIC) + 16
SHM_MAGIC = b"PKSHM1\n"
SHM_DIR = Path("/dev/shm")


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of one probe."""

    transport: str
    """``tcp``, ``udp`` or ``shm``."""
    target: str
    """What was probed (``addr:port`` or the shm name)."""
    ok: bool
    rtt_s: float | None = None
    """Round-trip (or open) time in seconds when ``ok``."""
    error: str | None = None
    """Why it failed, when not ``ok``."""

    def to_json(self) -> dict[str, object]:
        """Return a JSON-ready dict."""
        return {
            "transport": self.transport, "target": self.target, "ok": self.ok,
            "rtt_s": self.rtt_s, "error": self.error,
        }  # fmt: skip


def sockaddr(address: str, port: int, iface: str | None) -> tuple[int, tuple[Any, ...]]:
    """Return (family, socket address) for an IP ``address`` and ``port``.

    A link-local IPv6 address gets the scope of ``iface``.

    Raises:
        ProbeError: not an IP address, or a port outside 1-65535.

    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise ProbeError(f"probe target {address!r} is not an IP address") from None
    if not 1 <= port <= 65535:
        raise ProbeError(f"probe port {port} outside 1-65535")
    if ip.version == 4:
        return socket.AF_INET, (str(ip), port)
    scope = socket.if_nametoindex(iface) if iface and ip.is_link_local else 0
    return socket.AF_INET6, (str(ip), port, 0, scope)


def bound_socket(kind: int, host: str, port: int) -> socket.socket:
    """Return a socket of ``kind`` bound to ``host:port``.

    ``host`` "" means every address of this namespace, IPv4 and IPv6 alike (one dual-stack
    socket; IPv4 only where the kernel has no IPv6).
    """
    if host == "" and socket.has_ipv6:
        try:
            sock = socket.socket(socket.AF_INET6, kind)
        except OSError:
            pass  # IPv6 disabled: plain IPv4 below
        else:
            try:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                if kind == socket.SOCK_STREAM:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("::", port))
            except OSError:
                sock.close()
                raise
            return sock
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def peer_host(address: str) -> str:
    """Return a peer's address as text, IPv4-mapped IPv6 shown as plain IPv4."""
    return address[7:] if address.startswith("::ffff:") and "." in address else address


def _target(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def probe_tcp(
    address: str, port: int, *, iface: str | None = None, timeout: float = 1.0
) -> ProbeResult:
    """Connect to ``address:port`` over TCP and close; RTT is the connect time.

    Raises:
        ProbeError: ``address`` is not an IP address or ``port`` is out of range.

    """
    family, sa = sockaddr(address, port, iface)
    start = time.perf_counter()
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(sa)
        except OSError as exc:
            return ProbeResult("tcp", _target(address, port), False, error=_why(exc))
    return ProbeResult("tcp", _target(address, port), True, time.perf_counter() - start)


def probe_udp(
    address: str, port: int, *, iface: str | None = None, timeout: float = 1.0, attempts: int = 3
) -> ProbeResult:
    """Send an echo token to ``address:port`` over UDP; RTT of the first good answer.

    Raises:
        ProbeError: ``address`` is not an IP address or ``port`` is out of range.

    """
    family, sa = sockaddr(address, port, iface)
    token = ECHO_MAGIC + secrets.token_bytes(16)
    last = "no answer"
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout / attempts)
        try:
            s.connect(sa)
        except OSError as exc:
            return ProbeResult("udp", _target(address, port), False, error=_why(exc))
        for _ in range(attempts):
            start = time.perf_counter()
            try:
                s.send(token)
                while True:
                    if s.recv(64) == token:
                        rtt = time.perf_counter() - start
                        return ProbeResult("udp", _target(address, port), True, rtt)
            except OSError as exc:
                last = _why(exc)
    return ProbeResult("udp", _target(address, port), False, error=last)


def probe_shm(name: str, identity: str) -> ProbeResult:
    """Open the probe segment ``/dev/shm/NAME`` and check it names ``identity``."""
    start = time.perf_counter()
    try:
        data = (SHM_DIR / name).read_bytes()[: len(SHM_MAGIC) + 256]
    except OSError as exc:
        return ProbeResult("shm", name, False, error=_why(exc))
    if data != SHM_MAGIC + identity.encode():
        return ProbeResult("shm", name, False, error="segment names another identity")
    return ProbeResult("shm", name, True, time.perf_counter() - start)


def probe_hints(
    address: str | None,
    hints: Hints,
    *,
    iface: str | None = None,
    local_host_token: bytes = b"",
    timeout: float = 1.0,
) -> tuple[ProbeResult, ...]:
    """Probe every transport ``hints`` offers that applies; unknown ones are skipped.

    Args:
        address: the neighbor's management address (None: only shm can be probed).
        hints: what the neighbor advertised.
        iface: the local interface it was heard on (scope of link-local IPv6).
        local_host_token: our host token; shm applies only when it equals the neighbor's.
        timeout: per probe, seconds.

    """
    results = []
    for transport in hints.transports:
        if transport == "tcp" and hints.control_port and address:
            results.append(probe_tcp(address, hints.control_port, iface=iface, timeout=timeout))
        elif transport == "udp" and hints.echo_port and address:
            results.append(probe_udp(address, hints.echo_port, iface=iface, timeout=timeout))
        elif (
            transport == "shm"
            and hints.shm_name
            and hints.host_token
            and hints.host_token == local_host_token
        ):
            results.append(probe_shm(hints.shm_name, hints.identity))
    return tuple(results)


def _why(exc: OSError) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return exc.strerror or type(exc).__name__


class UdpEchoServer:
    """Answers probe datagrams (``PKE1`` + 16 bytes) with the same bytes.

    Args:
        host: address to bind (``""`` for all of this namespace's addresses).
        port: UDP port, 0 for any free one (read :attr:`port` after).

    """

    def __init__(self, host: str = "", port: int = 0) -> None:
        self._sock = bound_socket(socket.SOCK_DGRAM, host, port)
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self.answered = 0
        self.ignored = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="udp-echo", daemon=True)

    def start(self) -> UdpEchoServer:
        """Start answering in a background thread."""
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(64)
            except TimeoutError:
                continue
            except OSError:
                return
            if len(data) == ECHO_SIZE and data.startswith(ECHO_MAGIC):
                self.answered += 1  # before the reply: whoever has the reply sees it counted
                try:
                    self._sock.sendto(data, peer)
                except OSError:
                    self.answered -= 1
            else:
                self.ignored += 1

    def close(self) -> None:
        """Stop and close the socket."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(1.0)
        self._sock.close()


SHM_PREFIX = "pk-probe-"


def sweep_stale_segments() -> list[str]:
    """Remove probe segments (``pk-probe-<pid>-<tag>``) whose creating process is gone.

    Returns:
        The names removed.

    """
    removed = []
    for path in SHM_DIR.glob(f"{SHM_PREFIX}*"):
        pid_text = path.name[len(SHM_PREFIX) :].split("-", 1)[0]
        if not pid_text.isdigit():
            continue
        if not pid_alive(int(pid_text)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path.name)
    return removed


class ShmProbeSegment:
    """The segment a same-host peer opens to prove shared memory reaches us.

    Named ``pk-probe-<pid>-<tag>`` so that :func:`sweep_stale_segments` can remove it if
    this process dies without closing it.

    Args:
        tag: what makes the name unique within this process (``[A-Za-z0-9._-]``).
        identity: our identity, written into the segment.

    """

    def __init__(self, tag: str, identity: str) -> None:
        self.path = SHM_DIR / f"{SHM_PREFIX}{os.getpid()}-{tag}"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(SHM_MAGIC + identity.encode())

    def close(self) -> None:
        """Remove the segment."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
