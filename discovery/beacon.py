"""Beacon: mutual authentication of two kernels that share a passphrase.

Key: ``K = scrypt(passphrase, salt="pykernel-beacon-v1/" + realm, n=2**14, r=8, p=1)``.
Exchange (I = initiator, R = responder; every field length-prefixed)::

    I -> R  HELLO      Ni, id_I, padding            (Ni: 32 fresh random bytes)
    R -> I  CHALLENGE  Nr, id_R, mac_R              (Nr: 32 fresh random bytes)
    I -> R  PROOF      Nr, mac_I                    (only if mac_R verified)
    R -> I  ACCEPT     mac_A                        (or the uniform FAIL)

    mac_X = HMAC-SHA256(K, T(role_X)),
    T(role) = lp("pykernel-beacon-v1") | lp(role) | lp(id_I) | lp(id_R) | lp(Ni) | lp(Nr)
    roles: "responder", "initiator", "accept";  lp(x) = u32 length | x

Why each piece: both nonces make every transcript fresh (no replay); the role labels make
a MAC from one direction useless in the other (no reflection); both identities bind who is
talking to whom. R keeps Nr single-use with an expiry, consumed before verifying (one guess
per challenge). MACs are compared with :func:`hmac.compare_digest`. Every failure —
malformed, unknown or expired nonce, replay, wrong MAC, rate limit — gets the same
:data:`FAIL` bytes, so a prober learns nothing about why. HELLO is padded to at least
:data:`MIN_HELLO` bytes so over UDP R never answers with more than it was sent.

A peer's LLDP hints are untrusted until its beacon succeeds with the identity they claim.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from discovery._errors import BeaconError, DiscoveryConfigError

PROTOCOL = b"pykernel-beacon-v1"
MAGIC = b"PKB1"
HELLO, CHALLENGE, PROOF, ACCEPT, FAILED = 1, 2, 3, 4, 5
FAIL = MAGIC + bytes([FAILED])
"""The one answer to every failure."""
NONCE_SIZE = 32
MAC_SIZE = 32
MAX_IDENTITY = 200
MIN_HELLO = 320
MAX_MESSAGE = 1024
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_PASSPHRASE = 8


class BeaconConfigError(DiscoveryConfigError):
    """A beacon set up wrongly (passphrase too short, bad identity)."""


@dataclass(frozen=True, repr=False)
class BeaconKey:
    """The derived key. Never printed, never logged, never put in a TLV."""

    secret: bytes

    def __repr__(self) -> str:
        return "BeaconKey(<hidden>)"

    @classmethod
    def derive(cls, passphrase: str, realm: str = "default") -> BeaconKey:
        """Derive the key from a passphrase with scrypt (deliberately slow, ~50 ms).

        Raises:
            BeaconConfigError: passphrase shorter than 8 characters.

        """
        if len(passphrase) < MIN_PASSPHRASE:
            raise BeaconConfigError(f"beacon passphrase must be at least {MIN_PASSPHRASE} chars")
        secret = hashlib.scrypt(
            passphrase.encode("utf-8"),
            salt=PROTOCOL + b"/" + realm.encode("utf-8"),
            n=SCRYPT_N,
            r=SCRYPT_R,
            p=SCRYPT_P,
            dklen=32,
        )
        return cls(secret)


def _lp32(x: bytes) -> bytes:
    return struct.pack("!I", len(x)) + x


def transcript_mac(
    key: BeaconKey, role: bytes, id_i: bytes, id_r: bytes, ni: bytes, nr: bytes
) -> bytes:
    """Return HMAC-SHA256 over the length-prefixed transcript for ``role``."""
    t = b"".join(_lp32(x) for x in (PROTOCOL, role, id_i, id_r, ni, nr))
    return hmac.new(key.secret, t, hashlib.sha256).digest()


def encode(kind: int, *fields: bytes) -> bytes:
    """Encode a beacon message: magic, kind, then u16-length-prefixed fields."""
    return MAGIC + bytes([kind]) + b"".join(struct.pack("!H", len(f)) + f for f in fields)


def decode(msg: bytes, kind: int, count: int) -> list[bytes]:
    """Decode a message of ``kind`` with exactly ``count`` fields.

    Raises:
        BeaconError: anything else (the uniform failure; no detail leaves).

    """
    if len(msg) > MAX_MESSAGE or msg[:5] != MAGIC + bytes([kind]):
        raise BeaconError()
    fields, pos = [], 5
    for _ in range(count):
        if pos + 2 > len(msg):
            raise BeaconError()
        (n,) = struct.unpack_from("!H", msg, pos)
        if pos + 2 + n > len(msg):
            raise BeaconError()
        fields.append(msg[pos + 2 : pos + 2 + n])
        pos += 2 + n
    if pos != len(msg):
        raise BeaconError()
    return fields


def _check_identity(identity: str) -> bytes:
    raw = identity.encode("utf-8")
    if not 1 <= len(raw) <= MAX_IDENTITY or not identity.isprintable():
        raise BeaconConfigError(f"beacon identity must be 1-{MAX_IDENTITY} printable bytes")
    return raw


class TokenBucket:
    """A token bucket: ``rate`` per second, at most ``burst`` at once."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst, self.tokens, self.at = rate, burst, burst, now

    def take(self, now: float) -> bool:
        """Take one token if there is one."""
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass(frozen=True)
class _Pending:
    ni: bytes
    id_i: bytes
    peer: str
    expires: float


@dataclass(frozen=True)
class ResponderStats:
    """What the responder answered."""

    challenges: int = 0
    accepted: int = 0
    failed: int = 0
    rate_limited: int = 0


class BeaconResponder:
    """The responder side, transport-free: ``handle(message, peer) -> answer``.

    Args:
        key: the shared key.
        identity: our identity (as advertised in our LLDP hints).
        nonce_ttl: seconds a challenge stays answerable.
        max_pending: most outstanding challenges (oldest dropped first).
        rate, burst: per-peer token bucket (messages per second).
        global_rate: all peers together, per second.
        on_accept: told ``(peer identity, peer address)`` for each authenticated peer.
        clock: monotonic clock.

    """

    def __init__(
        self,
        key: BeaconKey,
        identity: str,
        *,
        nonce_ttl: float = 10.0,
        max_pending: int = 1024,
        rate: float = 5.0,
        burst: float = 10.0,
        global_rate: float = 200.0,
        on_accept: Callable[[str, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._key = key
        self._id = _check_identity(identity)
        self.identity = identity
        self._ttl = nonce_ttl
        self._max_pending = max_pending
        self._rate, self._burst = rate, burst
        self._clock = clock
        self._global = TokenBucket(global_rate, global_rate, clock())
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._pending: OrderedDict[bytes, _Pending] = OrderedDict()
        self._on_accept = on_accept
        self._lock = threading.Lock()
        self._counts = {"challenges": 0, "accepted": 0, "failed": 0, "rate_limited": 0}

    def stats(self) -> ResponderStats:
        """Return a snapshot of the counters."""
        with self._lock:
            return ResponderStats(**self._counts)

    def handle(self, msg: bytes, peer: str, *, datagram: bool = False) -> bytes:
        """Answer one message from ``peer`` (its address); any failure answers :data:`FAIL`."""
        with self._lock:
            now = self._clock()
            if not self._allow(peer, now):
                self._counts["rate_limited"] += 1
                self._counts["failed"] += 1
                return FAIL
            try:
                if msg[4:5] == bytes([HELLO]):
                    answer = self._hello(msg, peer, now, datagram)
                    self._counts["challenges"] += 1
                    return answer
                identity, answer = self._proof(msg, peer, now)
                self._counts["accepted"] += 1
            except BeaconError:
                self._counts["failed"] += 1
                return FAIL
        if self._on_accept is not None:
            self._on_accept(identity, peer)
        return answer

    def _allow(self, peer: str, now: float) -> bool:
        bucket = self._buckets.get(peer)
        if bucket is None:
            bucket = self._buckets[peer] = TokenBucket(self._rate, self._burst, now)
            if len(self._buckets) > 4096:  # forget the longest-idle peer
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(peer)
        return bucket.take(now) and self._global.take(now)

    def _hello(self, msg: bytes, peer: str, now: float, datagram: bool) -> bytes:
        ni, id_i, _pad = decode(msg, HELLO, 3)
        if datagram and len(msg) < MIN_HELLO:
            raise BeaconError()  # would let us answer more than we got
        if len(ni) != NONCE_SIZE or not 1 <= len(id_i) <= MAX_IDENTITY or id_i == self._id:
            raise BeaconError()
        while self._pending and next(iter(self._pending.values())).expires <= now:
            self._pending.popitem(last=False)
        if len(self._pending) >= self._max_pending:
            self._pending.popitem(last=False)
        nr = secrets.token_bytes(NONCE_SIZE)
        self._pending[nr] = _Pending(ni, id_i, peer, now + self._ttl)
        mac = transcript_mac(self._key, b"responder", id_i, self._id, ni, nr)
        return encode(CHALLENGE, nr, self._id, mac)

    def _proof(self, msg: bytes, peer: str, now: float) -> tuple[str, bytes]:
        nr, mac_i = decode(msg, PROOF, 2)
        pending = self._pending.pop(nr, None)  # single use: consumed whatever follows
        if pending is None or pending.expires <= now or pending.peer != peer:
            raise BeaconError()
        want = transcript_mac(self._key, b"initiator", pending.id_i, self._id, pending.ni, nr)
        if not hmac.compare_digest(want, mac_i):
            raise BeaconError()
        accept = transcript_mac(self._key, b"accept", pending.id_i, self._id, pending.ni, nr)
        return pending.id_i.decode("utf-8", errors="replace"), encode(ACCEPT, accept)


class BeaconInitiator:
    """The initiator side, transport-free: three steps driven by a transport.

    Args:
        key: the shared key.
        identity: our identity.
        expected: the identity the peer must prove (from its LLDP hints), or None for any.

    """

    def __init__(self, key: BeaconKey, identity: str, expected: str | None = None) -> None:
        self._key = key
        self._id = _check_identity(identity)
        self._expected = expected.encode("utf-8") if expected is not None else None
        self._ni = secrets.token_bytes(NONCE_SIZE)
        self._nr: bytes | None = None
        self._id_r: bytes | None = None
        self.peer_identity: str | None = None
        """Set once the peer has proven its identity."""

    def hello(self) -> bytes:
        """Return the HELLO message (padded to :data:`MIN_HELLO` bytes)."""
        bare = len(encode(HELLO, self._ni, self._id, b""))
        return encode(HELLO, self._ni, self._id, bytes(max(0, MIN_HELLO - bare)))

    def proof(self, challenge: bytes) -> bytes:
        """Verify the CHALLENGE and return our PROOF.

        Raises:
            BeaconError: the responder did not prove the key (or is not who we expect).

        """
        nr, id_r, mac_r = decode(challenge, CHALLENGE, 3)
        if len(nr) != NONCE_SIZE or self._nr is not None or id_r == self._id:
            raise BeaconError()
        if self._expected is not None and id_r != self._expected:
            raise BeaconError()
        want = transcript_mac(self._key, b"responder", self._id, id_r, self._ni, nr)
        if not hmac.compare_digest(want, mac_r):
            raise BeaconError()
        self._nr, self._id_r = nr, id_r
        mac_i = transcript_mac(self._key, b"initiator", self._id, id_r, self._ni, nr)
        return encode(PROOF, nr, mac_i)

    def finish(self, answer: bytes) -> str:
        """Check the ACCEPT; return the peer's proven identity.

        Raises:
            BeaconError: the responder refused us (or the answer is not authentic).

        """
        if self._nr is None or self._id_r is None:
            raise BeaconError()
        (mac_a,) = decode(answer, ACCEPT, 1)
        want = transcript_mac(self._key, b"accept", self._id, self._id_r, self._ni, self._nr)
        if not hmac.compare_digest(want, mac_a):
            raise BeaconError()
        self.peer_identity = self._id_r.decode("utf-8", errors="replace")
        return self.peer_identity
