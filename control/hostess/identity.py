"""The guest identity ``fqdn:servername:classHex:owner:authFlag:authMechanism:uuid``.

Rules (checked in this order, the first broken rule is reported with its field):

- exactly seven fields separated by ``:``; no whitespace anywhere;
- ``fqdn``: an RFC 1123 host name: dot-separated labels of 1-63 letters, digits and hyphens,
  not starting or ending with a hyphen, 253 characters at most, no trailing dot; stored
  lower-case (DNS names are case-insensitive);
- ``servername``: 1-64 characters, a letter then letters, digits, ``_`` or ``-`` (no dot: the
  connectome writes ``server.terminal``);
- ``classHex``: 1-16 hex digits (a 64-bit class), with or without a ``0x`` prefix (the
  manifest writes one); formatted as lower-case digits without the prefix;
- ``owner``: 1-64 characters from letters, digits and ``_ . @ -``;
- ``authFlag``: ``0`` or ``1``; the mechanism is ``none`` exactly when the flag is ``0``;
- ``authMechanism``: one of :data:`AUTH_MECHANISMS`;
- ``uuid``: the canonical 8-4-4-4-12 hex form; formatted lower-case.
"""

from __future__ import annotations

import re
import uuid as uuidlib
from dataclasses import dataclass

from control.hostess.errors import IdentityError

# The manifest checks the same names at build time: one set of rules for both.
from control.manifest import AUTH_MECHANISMS, OWNER_RE, SERVERNAME_RE, TERMINAL_NAME_RE

__all__ = ["AUTH_MECHANISMS", "CLASS_BITS", "FIELDS", "Identity", "check_fqdn", "check_name"]

FIELDS: tuple[str, ...] = (
    "fqdn",
    "servername",
    "classHex",
    "owner",
    "authFlag",
    "authMechanism",
    "uuid",
)
"""The identity's fields, in string order."""

CLASS_BITS = 64
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_HEX = re.compile(r"[0-9A-Fa-f]{1,16}\Z")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z", re.I)
_SPACE = re.compile(r"\s")


def check_fqdn(value: str, field: str = "fqdn") -> str:
    """Return ``value`` lower-cased if it is an RFC 1123 host name.

    Raises:
        IdentityError: naming ``field`` and the broken rule.

    """
    if not value:
        raise IdentityError(field, value, "empty")
    if value.endswith("."):
        raise IdentityError(field, value, "trailing dot (write the name without it)")
    if len(value) > 253:
        raise IdentityError(field, value, f"{len(value)} characters, at most 253")
    lowered = value.lower()
    for index, label in enumerate(lowered.split(".")):
        if not label:
            raise IdentityError(field, value, f"empty label at position {index + 1}")
        if len(label) > 63:
            raise IdentityError(field, value, f"label {label!r} longer than 63 characters")
        if not _LABEL.match(label):
            raise IdentityError(
                field,
                value,
                f"label {label!r} must be letters, digits and inner hyphens (RFC 1123)",
            )
    return lowered


def check_name(value: str, field: str) -> str:
    """Return ``value`` if it is a valid server name (or terminal name if ``field`` says so).

    Raises:
        IdentityError: naming ``field`` and the allowed charset.

    """
    if field == "terminal":
        if not TERMINAL_NAME_RE.fullmatch(value):
            reason = "must be 1-64 characters: a letter or _, then letters, digits or _"
            raise IdentityError(field, value, reason)
    elif not SERVERNAME_RE.fullmatch(value):
        reason = "must be 1-64 characters: a letter, then letters, digits, _ or -"
        raise IdentityError(field, value, reason)
    return value


def _check_owner(value: str) -> str:
    if not OWNER_RE.fullmatch(value):
        raise IdentityError(
            "owner",
            value,
            "must be 1-64 characters of letters, digits, _ . @ -",
        )
    return value


def _parse_class(value: str) -> int:
    digits = value[2:] if value[:2] in ("0x", "0X") else value
    if not _HEX.match(digits):
        if re.fullmatch(r"[0-9A-Fa-f]+", digits):
            raise IdentityError("classHex", value, f"wider than {CLASS_BITS} bits (16 digits)")
        raise IdentityError("classHex", value, "must be 1-16 hex digits (0x optional)")
    return int(digits, 16)


def _parse_flag(value: str) -> bool:
    if value not in ("0", "1"):
        raise IdentityError("authFlag", value, "must be 0 or 1")
    return value == "1"


def _check_mechanism(value: str) -> str:
    if value not in AUTH_MECHANISMS:
        known = "|".join(sorted(AUTH_MECHANISMS))
        raise IdentityError("authMechanism", value, f"unknown mechanism (known: {known})")
    return value


def _parse_uuid(value: str) -> uuidlib.UUID:
    if not _UUID.match(value):
        raise IdentityError("uuid", value, "must be the 8-4-4-4-12 hex form")
    return uuidlib.UUID(value)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a guest is: the seven identity fields, validated on construction.

    Attributes:
        fqdn: the host's fully qualified domain name (lower-case).
        servername: the server's name on that host.
        klass: the 64-bit server class (``classHex`` as an integer).
        owner: who runs it.
        auth_flag: whether peers must authenticate to use it.
        auth_mechanism: how they authenticate (one of :data:`AUTH_MECHANISMS`).
        uuid: the guest's unique ID.

    """

    fqdn: str
    servername: str
    klass: int
    owner: str
    auth_flag: bool
    auth_mechanism: str
    uuid: uuidlib.UUID

    def __post_init__(self) -> None:
        if not isinstance(self.fqdn, str):
            raise IdentityError("fqdn", repr(self.fqdn), "must be a string")
        object.__setattr__(self, "fqdn", check_fqdn(self.fqdn))
        for field, value in (
            ("servername", self.servername),
            ("owner", self.owner),
            ("authMechanism", self.auth_mechanism),
        ):
            if not isinstance(value, str):
                raise IdentityError(field, repr(value), "must be a string")
        check_name(self.servername, "servername")
        _check_owner(self.owner)
        if type(self.klass) is not int or not 0 <= self.klass < 1 << CLASS_BITS:
            raise IdentityError(
                "classHex", repr(self.klass), f"must be an int in [0, 2**{CLASS_BITS})"
            )
        if type(self.auth_flag) is not bool:
            raise IdentityError("authFlag", repr(self.auth_flag), "must be a bool")
        _check_mechanism(self.auth_mechanism)
        if not isinstance(self.uuid, uuidlib.UUID):
            raise IdentityError("uuid", repr(self.uuid), "must be a uuid.UUID")
        if self.auth_flag and self.auth_mechanism == "none":
            raise IdentityError("authMechanism", "none", "authFlag 1 needs a mechanism")
        if not self.auth_flag and self.auth_mechanism != "none":
            reason = "authFlag 0 means no authentication: the mechanism must be none"
            raise IdentityError("authMechanism", self.auth_mechanism, reason)

    @classmethod
    def trusted(
        cls,
        fqdn: str,
        servername: str,
        klass: int,
        owner: str,
        auth_flag: bool,
        auth_mechanism: str,
        uuid: uuidlib.UUID,
    ) -> Identity:
        """Build an identity from fields validated before (read back from the registry).

        Skips the checks, which dominate the cost of loading many guests. Never use it on
        input from outside.
        """
        self = object.__new__(cls)
        setter = object.__setattr__  # frozen: the dataclass's own __setattr__ refuses
        setter(self, "fqdn", fqdn)
        setter(self, "servername", servername)
        setter(self, "klass", klass)
        setter(self, "owner", owner)
        setter(self, "auth_flag", auth_flag)
        setter(self, "auth_mechanism", auth_mechanism)
        setter(self, "uuid", uuid)
        return self

    @classmethod
    def parse(cls, text: str) -> Identity:
        """Parse an identity string.

        Args:
            text: ``fqdn:servername:classHex:owner:authFlag:authMechanism:uuid``.

        Returns:
            The validated identity.

        Raises:
            IdentityError: naming the first field that breaks a rule, and why.

        """
        if not isinstance(text, str):
            raise IdentityError("identity", repr(text), "must be a string")
        parts = text.split(":")
        if len(parts) != len(FIELDS):
            raise IdentityError(
                "identity", text, f"{len(parts)} fields, expected {len(FIELDS)}: {':'.join(FIELDS)}"
            )
        for field, part in zip(FIELDS, parts, strict=True):
            if _SPACE.search(part):
                raise IdentityError(field, part, "stray whitespace")
        fqdn, servername, klass, owner, flag, mechanism, uid = parts
        fqdn = check_fqdn(fqdn)
        check_name(servername, "servername")
        number = _parse_class(klass)
        _check_owner(owner)
        auth_flag = _parse_flag(flag)
        _check_mechanism(mechanism)
        return cls(fqdn, servername, number, owner, auth_flag, mechanism, _parse_uuid(uid))

    def format(self) -> str:
        """Return the canonical identity string (lower-case hex and UUID)."""
        return ":".join(
            (
                self.fqdn,
                self.servername,
                f"{self.klass:x}",
                self.owner,
                "1" if self.auth_flag else "0",
                self.auth_mechanism,
                str(self.uuid),
            )
        )

    def __str__(self) -> str:
        return self.format()
