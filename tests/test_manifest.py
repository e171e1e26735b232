"""Manifests: one rule set for servers declared in code and in YAML."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control.errors import ManifestError
from control.manifest import (
    AUTH_MECHANISMS,
    DIRECTIONS,
    Manifest,
    TerminalSpec,
    check_manifest,
    manifest,
    manifest_of,
    terminal,
)


def good(**changes: Any) -> dict[str, Any]:
    """A valid manifest mapping with some fields changed."""
    data: dict[str, Any] = {
        "servername": "source", "class_hex": "0x10", "owner": "demo",
        "auth_flag": 0, "auth_mechanism": "none",
        "terminals": [{"name": "frames", "direction": "multiplexer", "message_size": 4096,
                       "dtype": "float32", "shape": [1024]}],
    }
    data.update(changes)
    return data


class TestDecorator:
    """@manifest attaches a validated Manifest to a server function."""

    def test_attaches_manifest(self) -> None:
        """The decorated function carries __pykernel_manifest__ and stays callable."""
        @manifest(servername="source", class_hex="0x1A", owner="demo",
                  terminals=[terminal("frames", "multiplexer", message_size=4096,
                                      dtype="float32", shape=(1024,))])
        def run(ctx: object) -> str:
            return "ran"

        found = manifest_of(run)
        assert found is not None and run(None) == "ran"
        assert found.class_hex == "0x1a"  # normalised to lower case
        assert found.terminals == (TerminalSpec("frames", "multiplexer", 4096, "float32",
                                                (1024,), False),)

    def test_invalid_field_raises_at_decoration(self) -> None:
        """A bad identity field fails at import time, naming the field."""
        with pytest.raises(ManifestError, match=r"^class_hex: class_hex '0x' must match"):
            manifest(servername="s", class_hex="0x", owner="o",
                     terminals=[terminal("t", "input", message_size=1)])

    def test_duplicate_terminal(self) -> None:
        """Two terminals of one name are refused, pointing at the second."""
        with pytest.raises(ManifestError, match=r"terminals\[1\]\.name: terminal 'x' is declared"):
            manifest(servername="s", class_hex="0x1", owner="o",
                     terminals=[terminal("x", "input", message_size=1),
                                terminal("x", "output", message_size=1)])

    def test_terminal_helper_validates(self) -> None:
        """terminal() refuses a bad direction by itself."""
        with pytest.raises(ManifestError, match=r"direction: direction 'up' must be one of"):
            terminal("x", "up", message_size=8)

    def test_array_must_fit(self) -> None:
        """dtype x shape larger than message_size is refused."""
        with pytest.raises(ManifestError, match=r"smaller than the array \(float64 \[4\] = 32"):
            terminal("x", "input", message_size=16, dtype="float64", shape=(4,))

    def test_dtype_and_shape_together(self) -> None:
        """A dtype without a shape is refused."""
        with pytest.raises(ManifestError, match="dtype and shape must be given together"):
            terminal("x", "input", message_size=16, dtype="float64")

    def test_manifest_of_plain_function(self) -> None:
        """A function without a manifest has none."""
        assert manifest_of(lambda ctx: None) is None


class TestRules:
    """The identity and terminal rules, field by field."""

    @pytest.mark.parametrize(("changes", "field"), [
        ({"servername": "has space"}, "servername"),
        ({"servername": "a" * 65}, "servername"),
        ({"servername": "x:y"}, "servername"),
        ({"class_hex": "0x" + "f" * 17}, "class_hex"),
        ({"class_hex": "1a"}, "class_hex"),
        ({"class_hex": 26}, "class_hex"),
        ({"owner": ""}, "owner"),
        ({"owner": "a:b"}, "owner"),
        ({"auth_flag": 2}, "auth_flag"),
        ({"auth_flag": True}, "auth_flag"),
        ({"auth_flag": "1"}, "auth_flag"),
        ({"auth_mechanism": "kerberos"}, "auth_mechanism"),
        ({"auth_flag": 1}, "auth_mechanism"),
        ({"auth_flag": 0, "auth_mechanism": "token"}, "auth_mechanism"),
        ({"terminals": []}, "terminals"),
        ({"terminals": "frames"}, "terminals"),
        ({"extra": 1}, "extra"),
    ])
    def test_identity_problem_names_field(self, changes: dict[str, Any], field: str) -> None:
        """Each broken identity field is reported at that field."""
        built, problems = check_manifest(good(**changes))
        assert built is None
        assert [p.path for p in problems] == [(field,)]

    @pytest.mark.parametrize(("terminal_data", "field"), [
        ({"name": "9x", "direction": "input", "message_size": 1}, "name"),
        ({"name": "a.b", "direction": "input", "message_size": 1}, "name"),
        ({"name": "x", "direction": "sideways", "message_size": 1}, "direction"),
        ({"name": "x", "direction": "input", "message_size": 0}, "message_size"),
        ({"name": "x", "direction": "input", "message_size": (1 << 30) + 1}, "message_size"),
        ({"name": "x", "direction": "input", "message_size": 1.5}, "message_size"),
        ({"name": "x", "direction": "input", "message_size": 8, "dtype": "nope",
          "shape": [1]}, "dtype"),
        ({"name": "x", "direction": "input", "message_size": 8, "dtype": "u1",
          "shape": [0]}, "shape"),
        ({"name": "x", "direction": "input", "message_size": 8, "required": "yes"}, "required"),
    ])
    def test_terminal_problem_names_field(self, terminal_data: dict[str, Any],
                                          field: str) -> None:
        """Each broken terminal field is reported at terminals[0].<field>."""
        _, problems = check_manifest(good(terminals=[terminal_data]))
        assert [p.path for p in problems] == [("terminals", 0, field)]

    def test_all_problems_at_once(self) -> None:
        """Every problem is reported, not only the first."""
        _, problems = check_manifest({"servername": "", "class_hex": "", "owner": "",
                                      "terminals": [{}]})
        assert len(problems) == 6  # 3 identity fields + 3 missing terminal fields

    @pytest.mark.parametrize("direction", DIRECTIONS)
    def test_required_default(self, direction: str) -> None:
        """Inputs and combiners are required by default, outputs and multiplexers not."""
        spec = terminal("x", direction, message_size=8)
        assert spec.required is (direction in ("input", "combiner"))

    @pytest.mark.parametrize("mechanism", [m for m in AUTH_MECHANISMS if m != "none"])
    def test_auth_mechanisms(self, mechanism: str) -> None:
        """auth_flag 1 takes any mechanism but none."""
        built, problems = check_manifest(good(auth_flag=1, auth_mechanism=mechanism))
        assert problems == [] and built is not None and built.auth_mechanism == mechanism


class TestRecord:
    """The Manifest record itself."""

    def test_round_trip(self) -> None:
        """to_dict and from_dict are inverse."""
        built = Manifest.from_dict(good())
        assert Manifest.from_dict(built.to_dict()) == built

    def test_identity_string(self) -> None:
        """The Hostess identity joins the seven fields with colons."""
        built = Manifest.from_dict(good(auth_flag=1, auth_mechanism="token"))
        assert built.identity("host.example", "u-1") == (
            "host.example:source:0x10:demo:1:token:u-1")

    def test_frozen(self) -> None:
        """Manifests cannot be changed after creation."""
        built = Manifest.from_dict(good())
        with pytest.raises(AttributeError):
            built.owner = "other"  # type: ignore[misc]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20,
)


class TestProperties:
    """Anything from outside gives problems, never an exception."""

    @settings(max_examples=150, deadline=None)
    @given(json_values)
    def test_arbitrary_values(self, value: Any) -> None:
        """Any JSON-like value is either a manifest or a list of problems."""
        built, problems = check_manifest(value)
        assert (built is None) == bool(problems)

    @settings(max_examples=150, deadline=None)
    @given(st.sampled_from(["servername", "class_hex", "owner", "auth_flag", "auth_mechanism",
                            "terminals"]), json_values)
    def test_one_field_replaced(self, key: str, value: Any) -> None:
        """Replacing one field by anything yields a manifest or problems naming that field."""
        built, problems = check_manifest(good(**{key: value}))
        if built is None:
            assert problems and all(p.path[:1] in ((key,), ("auth_flag",),
                                                   ("auth_mechanism",), ())
                                    for p in problems)
