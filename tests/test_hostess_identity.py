"""Spec of the Hostess identity string: parse, format, validate."""

from __future__ import annotations

import contextlib
import string
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control.hostess import AUTH_MECHANISMS, Identity, IdentityError

UID = "123e4567-e89b-12d3-a456-426614174000"


def ident(**parts: str) -> str:
    fields = {
        "fqdn": "host.example.com",
        "servername": "cam0",
        "classHex": "ff12",
        "owner": "lab-a",
        "authFlag": "1",
        "authMechanism": "token",
        "uuid": UID,
    }
    fields.update(parts)
    return ":".join(fields.values())


class TestParse:
    def test_fields(self) -> None:
        """A valid string gives every field, typed."""
        got = Identity.parse(ident())
        assert got.fqdn == "host.example.com"
        assert got.servername == "cam0"
        assert got.klass == 0xFF12
        assert got.owner == "lab-a"
        assert got.auth_flag is True
        assert got.auth_mechanism == "token"
        assert got.uuid == uuid.UUID(UID)

    def test_canonical_format(self) -> None:
        """Format is canonical: lower-case host, hex and UUID; no 0x prefix."""
        text = ident(fqdn="Host.Example.COM", classHex="0xFF12", uuid=UID.upper())
        assert Identity.parse(text).format() == ident()
        assert str(Identity.parse(text)) == ident()

    def test_single_label_and_full_width_class(self) -> None:
        """A single-label host and a 64-bit class are fine."""
        got = Identity.parse(ident(fqdn="localhost", classHex="ffffffffffffffff"))
        assert got.klass == (1 << 64) - 1

    def test_no_auth(self) -> None:
        """authFlag 0 goes with mechanism none."""
        assert Identity.parse(ident(authFlag="0", authMechanism="none")).auth_flag is False


BAD = [
    ("a:b:c", "identity", r"3 fields, expected 7"),
    (ident() + ":x", "identity", r"8 fields"),
    (ident(fqdn=""), "fqdn", "empty"),
    (ident(fqdn="a..b"), "fqdn", "empty label at position 2"),
    (ident(fqdn="host.example."), "fqdn", "trailing dot"),
    (ident(fqdn="-host.example"), "fqdn", "RFC 1123"),
    (ident(fqdn="host_1.example"), "fqdn", "RFC 1123"),
    (ident(fqdn="a" * 64 + ".example"), "fqdn", "longer than 63"),
    (ident(fqdn=".".join(["a" * 60] * 5)), "fqdn", "at most 253"),
    (ident(servername="9cam"), "servername", "a letter, then"),
    (ident(servername="cam.0"), "servername", "a letter, then"),
    (ident(servername="c" * 65), "servername", "1-64"),
    (ident(classHex="xyz"), "classHex", "1-16 hex digits"),
    (ident(classHex=""), "classHex", "1-16 hex digits"),
    (ident(classHex="1" * 17), "classHex", "wider than 64 bits"),
    (ident(classHex="-1"), "classHex", "hex digits"),
    (ident(owner=""), "owner", "1-64"),
    (ident(owner="a/b"), "owner", "1-64"),
    (ident(authFlag="2"), "authFlag", "0 or 1"),
    (ident(authFlag="true"), "authFlag", "0 or 1"),
    (ident(authMechanism="kerberos"), "authMechanism", "unknown mechanism"),
    (ident(authMechanism="none"), "authMechanism", "authFlag 1 needs a mechanism"),
    (ident(authFlag="0"), "authMechanism", "must be none"),
    (ident(uuid="not-a-uuid"), "uuid", "8-4-4-4-12"),
    (ident(uuid=UID.replace("-", "")), "uuid", "8-4-4-4-12"),
    (ident(uuid="{" + UID + "}"), "uuid", "8-4-4-4-12"),
    (ident(owner=" lab"), "owner", "stray whitespace"),
    (ident(uuid=UID + "\n"), "uuid", "stray whitespace"),
    (" " + ident(), "fqdn", "stray whitespace"),
]


class TestErrors:
    @pytest.mark.parametrize(("text", "field", "reason"), BAD)
    def test_names_field_and_reason(self, text: str, field: str, reason: str) -> None:
        """Each broken rule is reported with the field it concerns."""
        with pytest.raises(IdentityError, match=reason) as info:
            Identity.parse(text)
        assert info.value.field == field
        assert field in str(info.value)

    def test_not_a_string(self) -> None:
        """Parsing a non-string is a typed error too."""
        with pytest.raises(IdentityError, match="must be a string"):
            Identity.parse(b"x")  # type: ignore[arg-type]

    def test_constructor_validates(self) -> None:
        """Building the record directly applies the same rules."""
        with pytest.raises(IdentityError, match="classHex"):
            Identity("h", "s", 1 << 64, "o", False, "none", uuid.UUID(UID))
        with pytest.raises(IdentityError, match="authFlag"):
            Identity("h", "s", 1, "o", 1, "none", uuid.UUID(UID))  # type: ignore[arg-type]
        with pytest.raises(IdentityError, match="uuid"):
            Identity("h", "s", 1, "o", False, "none", UID)  # type: ignore[arg-type]


_ALNUM = string.ascii_lowercase + string.digits
_label = st.one_of(
    st.sampled_from(_ALNUM),
    st.tuples(
        st.sampled_from(_ALNUM), st.text(_ALNUM + "-", max_size=20), st.sampled_from(_ALNUM)
    ).map("".join),
)
_fqdn = st.lists(_label, min_size=1, max_size=4).map(".".join)
_servername = st.tuples(
    st.sampled_from(string.ascii_letters),
    st.text(string.ascii_letters + string.digits + "_-", max_size=63),
).map("".join)
_owner = st.text(string.ascii_letters + string.digits + "_.@-", min_size=1, max_size=64)
_mechanisms = [m for m in AUTH_MECHANISMS if m != "none"]
identities = st.builds(
    Identity,
    fqdn=_fqdn,
    servername=_servername,
    klass=st.integers(0, (1 << 64) - 1),
    owner=_owner,
    auth_flag=st.just(False),
    auth_mechanism=st.just("none"),
    uuid=st.uuids(),
) | st.builds(
    Identity,
    fqdn=_fqdn,
    servername=_servername,
    klass=st.integers(0, (1 << 64) - 1),
    owner=_owner,
    auth_flag=st.just(True),
    auth_mechanism=st.sampled_from(_mechanisms),
    uuid=st.uuids(),
)


class TestProperties:
    @given(identities)
    def test_round_trip(self, identity: Identity) -> None:
        """parse(format(x)) == x for every valid identity."""
        assert Identity.parse(identity.format()) == identity

    @settings(max_examples=150)
    @given(st.text(max_size=120))
    def test_random_text_only_typed_errors(self, text: str) -> None:
        """Arbitrary text either parses or raises IdentityError, nothing else."""
        with contextlib.suppress(IdentityError):
            Identity.parse(text)

    @settings(max_examples=150)
    @given(identities, st.integers(0, 200), st.sampled_from(string.printable + "é\x00:"))
    def test_mutations_only_typed_errors(self, identity: Identity, pos: int, char: str) -> None:
        """A valid string with one character inserted parses or raises IdentityError."""
        text = identity.format()
        pos %= len(text) + 1
        mutated = text[:pos] + char + text[pos:]
        try:
            again = Identity.parse(mutated)
        except IdentityError:
            return
        assert Identity.parse(again.format()) == again
