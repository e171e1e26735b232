"""Probe: TCP connect, UDP echo and same-host shm, on loopback; success, RTT, failures."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator

import pytest

from discovery import Hints, ProbeError
from discovery.probe import (
    SHM_DIR,
    ShmProbeSegment,
    UdpEchoServer,
    probe_hints,
    probe_shm,
    probe_tcp,
    probe_udp,
    sweep_stale_segments,
)


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def echo() -> Iterator[UdpEchoServer]:
    srv = UdpEchoServer("127.0.0.1").start()
    yield srv
    srv.close()


@pytest.fixture
def segment() -> Iterator[ShmProbeSegment]:
    seg = ShmProbeSegment(f"test-{secrets.token_hex(4)}", "me:kernel")
    yield seg
    seg.close()


class TestTcp:
    def test_connect_succeeds_with_rtt(self, listener: int) -> None:
        """A listening port answers; the RTT is measured."""
        r = probe_tcp("127.0.0.1", listener)
        assert r.ok and r.rtt_s is not None and r.rtt_s > 0 and r.target.endswith(f":{listener}")

    def test_closed_port_is_a_failed_result(self, free_port: int) -> None:
        """A closed port is a result with the reason, not an exception."""
        r = probe_tcp("127.0.0.1", free_port)
        assert not r.ok and r.error == "Connection refused"

    @pytest.mark.parametrize(("addr", "port", "msg"), [
        ("not-an-ip", 80, "not an IP address"), ("127.0.0.1", 0, "outside 1-65535"),
    ])  # fmt: skip
    def test_bad_target(self, addr: str, port: int, msg: str) -> None:
        """Targets that are not IP:port are a typed error."""
        with pytest.raises(ProbeError, match=msg):
            probe_tcp(addr, port)


class TestUdp:
    def test_echo_succeeds(self, echo: UdpEchoServer) -> None:
        """The echo server returns our token; the RTT is measured."""
        r = probe_udp("127.0.0.1", echo.port)
        assert r.ok and r.rtt_s is not None and echo.answered >= 1

    def test_no_echo_server(self, free_port: int) -> None:
        """Without an echo server the probe fails with a reason."""
        r = probe_udp("127.0.0.1", free_port, timeout=0.3)
        assert not r.ok and r.error in {"Connection refused", "timed out"}

    def test_echo_ignores_other_datagrams(self, echo: UdpEchoServer) -> None:
        """Datagrams that are not probe tokens get no answer (no reflector)."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.3)
            s.sendto(b"hello there", ("127.0.0.1", echo.port))
            with pytest.raises(TimeoutError):
                s.recv(64)
        assert echo.ignored == 1


class TestShm:
    def test_segment_names_identity(self, segment: ShmProbeSegment) -> None:
        """The same-host segment is found and names the advertised identity."""
        assert probe_shm(segment.path.name, "me:kernel").ok
        r = probe_shm(segment.path.name, "someone:else")
        assert not r.ok and r.error == "segment names another identity"

    def test_stale_segments_are_swept(self, segment: ShmProbeSegment) -> None:
        """Segments of dead processes are removed; live ones are kept."""
        stale = SHM_DIR / f"pk-probe-{2**22 + 11}-test"  # above pid_max: never alive
        stale.write_bytes(b"x")
        try:
            assert stale.name in sweep_stale_segments()
            assert segment.path.exists() and not stale.exists()
        finally:
            stale.unlink(missing_ok=True)

    def test_missing_segment(self) -> None:
        """A missing segment is a failed result."""
        r = probe_shm("pk-test-probe-missing", "me:kernel")
        assert not r.ok and r.error == "No such file or directory"


class TestFromHints:
    def test_probes_what_applies(
        self, listener: int, echo: UdpEchoServer, segment: ShmProbeSegment
    ) -> None:
        """tcp, udp and (same host token only) shm are probed; unknown transports skipped."""
        hints = Hints(identity="me:kernel", control_port=listener, echo_port=echo.port,
                      transports=("tcp", "udp", "shm", "rdma"), host_token=b"T" * 16,
                      shm_name=segment.path.name)  # fmt: skip
        same = probe_hints("127.0.0.1", hints, local_host_token=b"T" * 16)
        assert [(r.transport, r.ok) for r in same] == [("tcp", True), ("udp", True), ("shm", True)]
        other = probe_hints("127.0.0.1", hints, local_host_token=b"X" * 16)
        assert [r.transport for r in other] == ["tcp", "udp"]
