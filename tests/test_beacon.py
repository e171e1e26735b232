"""Beacon: mutual authentication; every attack gets the same answer; rate limiting."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from discovery import BeaconError
from discovery.beacon import (
    FAIL,
    MIN_HELLO,
    PROOF,
    BeaconConfigError,
    BeaconInitiator,
    BeaconKey,
    BeaconResponder,
    decode,
    encode,
)
from discovery.beacon_net import BeaconServer, authenticate

KEY = BeaconKey.derive("correct horse battery")
OTHER = BeaconKey.derive("wrong horse battery")


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def responder(**kw: object) -> tuple[BeaconResponder, Clock]:
    clock = Clock()
    return BeaconResponder(KEY, "R:kernel", clock=clock, **kw), clock  # type: ignore[arg-type]


def exchange(
    r: BeaconResponder, init: BeaconInitiator, peer: str = "10.0.0.2"
) -> tuple[bytes, bytes]:
    challenge = r.handle(init.hello(), peer)
    proof = init.proof(challenge)
    return proof, r.handle(proof, peer)


class TestKey:
    def test_derivation_depends_on_passphrase_and_realm(self) -> None:
        """scrypt keys differ by passphrase and by realm, and are stable."""
        assert BeaconKey.derive("correct horse battery") == KEY
        assert KEY != OTHER
        assert BeaconKey.derive("correct horse battery", realm="lab") != KEY

    def test_secret_never_printed(self) -> None:
        """The key's repr hides the secret."""
        assert KEY.secret.hex() not in repr(KEY) and "hidden" in repr(KEY)

    def test_short_passphrase_refused(self) -> None:
        """Passphrases under 8 characters are refused."""
        with pytest.raises(BeaconConfigError, match="at least 8"):
            BeaconKey.derive("short")


class TestExchange:
    def test_mutual_success(self) -> None:
        """Same key: both sides prove themselves; the initiator learns R's identity."""
        r, _ = responder()
        init = BeaconInitiator(KEY, "I:kernel", expected="R:kernel")
        _, answer = exchange(r, init)
        assert init.finish(answer) == "R:kernel"
        assert r.stats().accepted == 1

    def test_initiator_refuses_responder_without_the_key(self) -> None:
        """A responder with another passphrase cannot produce a valid challenge."""
        r = BeaconResponder(OTHER, "R:kernel")
        init = BeaconInitiator(KEY, "I:kernel")
        with pytest.raises(BeaconError, match="beacon authentication failed"):
            init.proof(r.handle(init.hello(), "p"))

    def test_responder_refuses_initiator_without_the_key(self) -> None:
        """A proof made with another key gets FAIL."""
        r, _ = responder()
        challenge = r.handle(BeaconInitiator(OTHER, "I:kernel").hello(), "p")
        nr = decode(challenge, 2, 3)[0]
        forged = encode(PROOF, nr, bytes(32))
        assert r.handle(forged, "p") == FAIL

    def test_identity_must_match_hints(self) -> None:
        """The initiator refuses a responder that proves another identity than expected."""
        r, _ = responder()
        init = BeaconInitiator(KEY, "I:kernel", expected="someone-else")
        with pytest.raises(BeaconError):
            init.proof(r.handle(init.hello(), "p"))


class TestAttacks:
    def test_replayed_proof(self) -> None:
        """A proof that succeeded once is refused the second time (single-use nonce)."""
        r, _ = responder()
        proof, answer = exchange(r, BeaconInitiator(KEY, "I:kernel"))
        assert answer != FAIL
        assert r.handle(proof, "10.0.0.2") == FAIL

    def test_reflected_mac(self) -> None:
        """R's own MAC sent back as the initiator's proof is refused (role labels)."""
        r, _ = responder()
        challenge = r.handle(BeaconInitiator(KEY, "I:kernel").hello(), "p")
        nr, _id_r, mac_r = decode(challenge, 2, 3)
        assert r.handle(encode(PROOF, nr, mac_r), "p") == FAIL

    def test_reflected_identity(self) -> None:
        """A HELLO claiming the responder's own identity is refused."""
        r, _ = responder()
        assert r.handle(BeaconInitiator(KEY, "R:kernel").hello(), "p") == FAIL

    def test_expired_nonce(self) -> None:
        """A proof after the challenge expired is refused even if correct."""
        r, clock = responder(nonce_ttl=5.0)
        init = BeaconInitiator(KEY, "I:kernel")
        proof = init.proof(r.handle(init.hello(), "p"))
        clock.t += 5.01
        assert r.handle(proof, "p") == FAIL

    def test_proof_from_another_address(self) -> None:
        """A challenge is answerable only from the address that asked for it."""
        r, _ = responder()
        init = BeaconInitiator(KEY, "I:kernel")
        proof = init.proof(r.handle(init.hello(), "10.0.0.2"))
        assert r.handle(proof, "10.0.0.3") == FAIL

    def test_one_guess_per_challenge(self) -> None:
        """A wrong proof consumes the challenge: the right one after it fails too."""
        r, _ = responder()
        init = BeaconInitiator(KEY, "I:kernel")
        proof = init.proof(r.handle(init.hello(), "p"))
        nr = decode(proof, PROOF, 2)[0]
        assert r.handle(encode(PROOF, nr, bytes(32)), "p") == FAIL
        assert r.handle(proof, "p") == FAIL

    def test_forged_accept_refused(self) -> None:
        """The initiator checks the ACCEPT's MAC too."""
        r, _ = responder()
        init = BeaconInitiator(KEY, "I:kernel")
        init.proof(r.handle(init.hello(), "p"))
        with pytest.raises(BeaconError):
            init.finish(encode(4, bytes(32)))
        with pytest.raises(BeaconError):
            BeaconInitiator(KEY, "I:kernel").finish(FAIL)

    @settings(max_examples=200, deadline=None)
    @given(st.integers(0, 200), st.integers(1, 255))
    def test_any_flipped_byte_in_a_proof_fails(self, pos: int, delta: int) -> None:
        """Changing any byte of a valid proof gets FAIL."""
        r, _ = responder(rate=1e6, burst=1e6)
        init = BeaconInitiator(KEY, "I:kernel")
        proof = bytearray(init.proof(r.handle(init.hello(), "p")))
        proof[pos % len(proof)] = (proof[pos % len(proof)] + delta) % 256
        assert r.handle(bytes(proof), "p") == FAIL

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=400))
    def test_random_messages_get_the_uniform_answer(self, data: bytes) -> None:
        """Garbage always gets exactly FAIL."""
        r, _ = responder(rate=1e6, burst=1e6)
        assert r.handle(data, "p") == FAIL


class TestRateLimit:
    def test_burst_then_refused_then_refilled(self) -> None:
        """Past the burst a peer gets FAIL (even when right) until tokens refill."""
        r, clock = responder(rate=1.0, burst=3.0)
        answers = [r.handle(BeaconInitiator(KEY, "I:kernel").hello(), "p") for _ in range(4)]
        assert [a == FAIL for a in answers] == [False, False, False, True]
        assert r.stats().rate_limited == 1
        assert r.handle(BeaconInitiator(KEY, "I:kernel").hello(), "q") != FAIL  # per peer
        clock.t += 1.0
        assert r.handle(BeaconInitiator(KEY, "I:kernel").hello(), "p") != FAIL


@pytest.fixture
def server() -> Iterator[BeaconServer]:
    srv = BeaconServer(BeaconResponder(KEY, "R:kernel"), "127.0.0.1").start()
    yield srv
    srv.close()


class TestNetwork:
    @pytest.mark.parametrize("transport", ["tcp", "udp"])
    def test_same_passphrase_succeeds(self, server: BeaconServer, transport: str) -> None:
        """Over loopback TCP and UDP, the same passphrase authenticates both ways."""
        result = authenticate("127.0.0.1", server.port, KEY, "I:kernel", expected="R:kernel",
                              transport=transport)  # fmt: skip
        assert (result.peer_identity, result.transport) == ("R:kernel", transport)
        assert result.rtt_s > 0

    @pytest.mark.parametrize("transport", ["tcp", "udp"])
    def test_other_passphrase_fails(self, server: BeaconServer, transport: str) -> None:
        """Another passphrase fails with the uniform error."""
        with pytest.raises(BeaconError, match=r"^beacon authentication failed$"):
            authenticate("127.0.0.1", server.port, OTHER, "I:kernel", transport=transport)

    def test_no_answer_is_an_error_too(self) -> None:
        """Nobody listening is a BeaconError (no such peer), not a crash."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with pytest.raises(BeaconError, match="no answer"):
            authenticate("127.0.0.1", port, KEY, "I:kernel", timeout=0.5)

    def test_uniform_answer_on_the_wire(self, server: BeaconServer) -> None:
        """Garbage over UDP and a short (amplifying) HELLO both get exactly FAIL."""
        short = BeaconInitiator(KEY, "I:kernel").hello()[: MIN_HELLO - 40]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            for msg in (b"junk", short):
                s.sendto(msg, ("127.0.0.1", server.port))
                assert s.recv(2048) == FAIL

    def test_tcp_junk_and_oversize(self, server: BeaconServer) -> None:
        """A framed junk message gets FAIL; an oversize frame closes the connection."""
        with socket.create_connection(("127.0.0.1", server.port), timeout=2) as s:
            s.sendall(b"\x00\x04junk")
            assert s.recv(64) == b"\x00\x05" + FAIL
        with socket.create_connection(("127.0.0.1", server.port), timeout=2) as s:
            s.sendall(b"\xff\xff")
            assert s.recv(64) == b""
