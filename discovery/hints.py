"""pykernel's organizationally specific TLV: what a kernel offers, for probe and beacon.

Carried in one LLDP TLV of type 127 with OUI :data:`PYKERNEL_OUI` (a locally administered
CID) and subtype :data:`HINTS_SUBTYPE`. The information string, big-endian::

    u8   version (= 1)
    u16  control surface TCP port (0 = none)
    u16  beacon port, TCP and UDP (0 = none)
    u16  UDP echo port (0 = none)
    u8   n transports, then n x (u8 length, ASCII name [a-z0-9-]{1,16})
    u8   length, kernel identity (UTF-8, 1-200 bytes, printable)
    u8   length, host token (0-32 bytes: equal tokens mean "same host", so shm applies)
    u8   length, shm probe name (0-64 bytes, [A-Za-z0-9._-])

Nothing else may follow. Hints are untrusted until the beacon confirms the identity, and
they never carry a secret: LLDP is link-public.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from discovery._errors import HintsError
from discovery.tlv import MAX_ORG_DATA, OrgTlv

PYKERNEL_OUI = bytes.fromhex("0a706b")  # "\x0apk": CID space (locally administered)
HINTS_SUBTYPE = 1
HINTS_VERSION = 1
MAX_TRANSPORTS = 8
MAX_IDENTITY = 200
MAX_HOST_TOKEN = 32
MAX_SHM_NAME = 64
_TRANSPORT = re.compile(r"[a-z0-9-]{1,16}")
_SHM_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True)
class Hints:
    """What a kernel advertises about itself in LLDP (untrusted until the beacon)."""

    identity: str
    """The kernel's identity (as Hostess knows it)."""
    control_port: int = 0
    """TCP port of the control surface (0 = none)."""
    beacon_port: int = 0
    """Port of the beacon responder, TCP and UDP (0 = none)."""
    echo_port: int = 0
    """UDP echo port for the probe (0 = none)."""
    transports: tuple[str, ...] = ()
    """Transports offered, e.g. ``("tcp", "udp", "shm")``."""
    host_token: bytes = b""
    """Opaque same-host token: equal tokens mean shared memory can be probed."""
    shm_name: str = ""
    """Name of the shm probe segment under /dev/shm (empty = none)."""

    def __post_init__(self) -> None:
        for name in ("control_port", "beacon_port", "echo_port"):
            port = getattr(self, name)
            if not isinstance(port, int) or not 0 <= port <= 65535:
                raise HintsError(f"hints {name} {port!r} outside 0-65535")
        if len(self.transports) > MAX_TRANSPORTS:
            raise HintsError(f"hints: {len(self.transports)} transports, at most {MAX_TRANSPORTS}")
        for t in self.transports:
            if not isinstance(t, str) or not _TRANSPORT.fullmatch(t):
                raise HintsError(f"hints transport {t!r} is not [a-z0-9-]{{1,16}}")
        ident = self.identity.encode("utf-8") if isinstance(self.identity, str) else b""
        if not 1 <= len(ident) <= MAX_IDENTITY or not self.identity.isprintable():
            raise HintsError(
                f"hints identity must be 1-{MAX_IDENTITY} bytes of printable UTF-8, "
                f"got {self.identity!r}"
            )
        if len(self.host_token) > MAX_HOST_TOKEN:
            raise HintsError(f"hints host token of {len(self.host_token)} bytes over 32")
        if self.shm_name and not _SHM_NAME.fullmatch(self.shm_name):
            raise HintsError(f"hints shm name {self.shm_name!r} is not [A-Za-z0-9._-]{{1,64}}")

    def encode(self) -> bytes:
        """Encode the information string of the hints TLV."""
        out = bytearray(
            struct.pack("!BHHH", HINTS_VERSION, self.control_port, self.beacon_port, self.echo_port)
        )
        out.append(len(self.transports))
        for t in self.transports:
            out += _lp(t.encode("ascii"))
        out += _lp(self.identity.encode("utf-8"))
        out += _lp(self.host_token)
        out += _lp(self.shm_name.encode("ascii"))
        if len(out) > MAX_ORG_DATA:  # cannot happen with the field limits; kept as a guard
            raise HintsError(f"hints of {len(out)} bytes over {MAX_ORG_DATA}")
        return bytes(out)

    def to_org_tlv(self) -> OrgTlv:
        """Return the hints as an organizational TLV ready to be put in a frame."""
        return OrgTlv(PYKERNEL_OUI, HINTS_SUBTYPE, self.encode())

    def to_json(self) -> dict[str, object]:
        """Return a JSON-ready dict (host token as hex)."""
        return {
            "identity": self.identity,
            "control_port": self.control_port,
            "beacon_port": self.beacon_port,
            "echo_port": self.echo_port,
            "transports": list(self.transports),
            "host_token": self.host_token.hex(),
            "shm_name": self.shm_name,
        }


def _lp(raw: bytes) -> bytes:
    return bytes([len(raw)]) + raw


class _Reader:
    """Cursor over the information string; every shortfall is a HintsError with offset."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise HintsError(
                f"hints truncated at byte {self.pos}: {what} needs {n} bytes, "
                f"{len(self.data) - self.pos} left"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def lp(self, what: str) -> bytes:
        return self.take(self.take(1, f"{what} length")[0], what)


def decode_hints(data: bytes) -> Hints:
    """Parse and validate a hints information string.

    Raises:
        HintsError: unknown version, truncation, trailing bytes, or a field out of range;
            the message names the field and the byte offset.

    """
    r = _Reader(data)
    version, control, beacon, echo = struct.unpack("!BHHH", r.take(7, "header"))
    if version != HINTS_VERSION:
        raise HintsError(f"hints version {version} unknown (this is {HINTS_VERSION})")
    count = r.take(1, "transport count")[0]
    if count > MAX_TRANSPORTS:
        raise HintsError(f"hints: {count} transports at byte 7, at most {MAX_TRANSPORTS}")
    transports = []
    for i in range(count):
        at = r.pos
        raw = r.lp(f"transport {i}")
        try:
            transports.append(raw.decode("ascii"))
        except UnicodeDecodeError:
            raise HintsError(f"hints transport {i} at byte {at} is not ASCII") from None
    fields = {}
    for name in ("identity", "host_token", "shm_name"):
        at = r.pos
        raw = r.lp(name)
        if name == "host_token":
            fields[name] = raw
            continue
        try:
            fields[name] = raw.decode("utf-8" if name == "identity" else "ascii")
        except UnicodeDecodeError:
            raise HintsError(f"hints {name} at byte {at} is not valid text") from None
    if r.pos != len(data):
        raise HintsError(f"hints: {len(data) - r.pos} trailing bytes at byte {r.pos}")
    return Hints(
        identity=fields["identity"],  # type: ignore[arg-type]
        control_port=control,
        beacon_port=beacon,
        echo_port=echo,
        transports=tuple(transports),
        host_token=fields["host_token"],  # type: ignore[arg-type]
        shm_name=fields["shm_name"],  # type: ignore[arg-type]
    )


def is_hints_tlv(tlv: OrgTlv) -> bool:
    """Whether an organizational TLV is pykernel's hints TLV."""
    return tlv.oui == PYKERNEL_OUI and tlv.subtype == HINTS_SUBTYPE
