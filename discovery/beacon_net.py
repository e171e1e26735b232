"""The beacon over the network: a responder on TCP and UDP, and the initiator.

:class:`BeaconServer` serves one responder on a TCP and a UDP port of the same number;
:func:`authenticate` runs the initiator.

TCP messages are framed with a u16 length; a UDP datagram is one message. A connection
carries one exchange (HELLO, PROOF) and is closed after at most ``conn_timeout`` seconds.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass

from discovery._errors import BeaconError, ProbeError
from discovery.beacon import MAX_MESSAGE, BeaconInitiator, BeaconKey, BeaconResponder
from discovery.probe import bound_socket, peer_host, sockaddr


@dataclass(frozen=True)
class BeaconResult:
    """A successful beacon exchange."""

    peer_identity: str
    """The identity the peer proved."""
    transport: str
    """``tcp`` or ``udp``."""
    rtt_s: float
    """Time of the whole exchange, seconds."""


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def send_framed(sock: socket.socket, msg: bytes) -> None:
    """Send one u16-length-framed message."""
    sock.sendall(struct.pack("!H", len(msg)) + msg)


def recv_framed(sock: socket.socket) -> bytes:
    """Receive one u16-length-framed message (at most MAX_MESSAGE bytes).

    Raises:
        ConnectionError: closed early or a frame over the limit.

    """
    (n,) = struct.unpack("!H", _recv_exact(sock, 2))
    if n > MAX_MESSAGE:
        raise ConnectionError(f"frame of {n} bytes")
    return _recv_exact(sock, n)


class BeaconServer:
    """Serve a :class:`BeaconResponder` on TCP and UDP, same port number.

    Args:
        responder: the transport-free responder.
        host: address to bind (``""``: every address of this namespace).
        port: port, 0 for a free one (read :attr:`port`).
        max_connections: concurrent TCP exchanges; more are closed at once.
        conn_timeout: seconds one TCP exchange may take.

    """

    def __init__(
        self,
        responder: BeaconResponder,
        host: str = "",
        port: int = 0,
        *,
        max_connections: int = 32,
        conn_timeout: float = 3.0,
    ) -> None:
        self.responder = responder
        for _ in range(20):  # port 0: find one free for both protocols
            tcp = bound_socket(socket.SOCK_STREAM, host, port)
            chosen = tcp.getsockname()[1]
            try:
                udp = bound_socket(socket.SOCK_DGRAM, host, chosen)
                break
            except OSError:
                tcp.close()
                if port:
                    raise
        else:  # pragma: no cover - twenty collisions in a row
            raise OSError("no port free for both TCP and UDP")
        tcp.listen(64)
        tcp.settimeout(0.2)
        udp.settimeout(0.2)
        self._tcp, self._udp = tcp, udp
        self.port: int = chosen
        self._slots = threading.BoundedSemaphore(max_connections)
        self._conn_timeout = conn_timeout
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._serve_tcp, name="beacon-tcp", daemon=True),
            threading.Thread(target=self._serve_udp, name="beacon-udp", daemon=True),
        ]

    def start(self) -> BeaconServer:
        """Start serving in background threads."""
        for t in self._threads:
            t.start()
        return self

    def close(self) -> None:
        """Stop serving and close both sockets."""
        self._stop.set()
        for t in self._threads:
            if t.is_alive():
                t.join(1.0)
        self._tcp.close()
        self._udp.close()

    def _serve_udp(self) -> None:
        while not self._stop.is_set():
            try:
                msg, peer = self._udp.recvfrom(MAX_MESSAGE + 1)
            except TimeoutError:
                continue
            except OSError:
                return
            answer = self.responder.handle(msg, peer_host(peer[0]), datagram=True)
            with contextlib.suppress(OSError):
                self._udp.sendto(answer, peer)

    def _serve_tcp(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self._tcp.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._slots.acquire(blocking=False):
                conn.close()
                continue
            threading.Thread(
                target=self._exchange,
                args=(conn, peer_host(peer[0])),
                name="beacon-conn",
                daemon=True,
            ).start()

    def _exchange(self, conn: socket.socket, peer: str) -> None:
        deadline = time.monotonic() + self._conn_timeout
        try:
            with conn:
                for _ in range(2):
                    conn.settimeout(max(0.01, deadline - time.monotonic()))
                    answer = self.responder.handle(recv_framed(conn), peer)
                    send_framed(conn, answer)
                    if answer[4:5] != b"\x02":  # only a CHALLENGE continues the exchange
                        return
        except OSError:
            pass  # peer gone, timed out or sent junk: nothing to answer
        finally:
            self._slots.release()


def authenticate(
    address: str,
    port: int,
    key: BeaconKey,
    identity: str,
    *,
    expected: str | None = None,
    transport: str = "tcp",
    iface: str | None = None,
    timeout: float = 2.0,
) -> BeaconResult:
    """Run the beacon as initiator against ``address:port``.

    Args:
        address: the peer's IP address (from its LLDP management address).
        port: its beacon port (from its hints).
        key: our key.
        identity: our identity.
        expected: the identity its hints claim; the beacon must prove exactly this one.
        transport: ``tcp`` or ``udp``.
        iface: local interface (scope for link-local IPv6).
        timeout: seconds for the whole exchange.

    Returns:
        The peer's proven identity and the exchange time.

    Raises:
        BeaconError: the peer did not authenticate (or refused us, or did not answer).
        ProbeError: a malformed address, port or transport.

    """
    if transport not in ("tcp", "udp"):
        raise ProbeError(f"beacon transport {transport!r} is not tcp or udp")
    family, sa = sockaddr(address, port, iface)
    init = BeaconInitiator(key, identity, expected)
    start = time.perf_counter()
    kind = socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM
    try:
        with socket.socket(family, kind) as s:
            s.settimeout(timeout)
            s.connect(sa)
            if transport == "tcp":
                send_framed(s, init.hello())
                send_framed(s, init.proof(recv_framed(s)))
                peer = init.finish(recv_framed(s))
            else:
                s.send(init.hello())
                s.send(init.proof(s.recv(MAX_MESSAGE + 1)))
                peer = init.finish(s.recv(MAX_MESSAGE + 1))
    except OSError as exc:
        raise BeaconError(f"beacon: no answer from {address}:{port} ({exc})") from None
    return BeaconResult(peer, transport, time.perf_counter() - start)
