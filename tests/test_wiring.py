"""Wiring files: YAML read with every node's position, the published JSON Schema, fuzzing."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control import wiring as wiring_mod
from control.lint import lint_file
from control.wiring import (
    BACKOFF_FIELDS,
    CONNECTION_FIELDS,
    DEFAULT_FIELDS,
    SERVER_FIELDS,
    TOP_FIELDS,
    Diagnostic,
    load_located,
)
from control.wiring_read import read_wiring

ROOT = Path(__file__).resolve().parents[1]
CASES = Path(__file__).parent / "lint_cases"
SCHEMA = json.loads((ROOT / "control" / "wiring.schema.json").read_text())


def located(tmp_path: Path, text: str | bytes) -> wiring_mod.Located:
    """Load ``text`` from a temp file."""
    path = tmp_path / "w.yaml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return load_located(str(path))


class TestLocations:
    """Every field keeps its line and column."""

    def test_keys_and_items(self, tmp_path: Path) -> None:
        """Mapping entries are located at their key, list items at the item."""
        doc = located(tmp_path, "a:\n  b: 1\n  c:\n    - x\n    -   y\n")
        assert doc.locations[("a",)] == (1, 1)
        assert doc.locations[("a", "b")] == (2, 3)
        assert doc.locations[("a", "c", 1)] == (5, 9)
        assert doc.value == {"a": {"b": 1, "c": ["x", "y"]}}

    def test_flow_style(self, tmp_path: Path) -> None:
        """Flow mappings are located too."""
        doc = located(tmp_path, "s: {x: 1, y: [2, 3]}\n")
        assert doc.locations[("s", "y")] == (1, 11)
        assert doc.locations[("s", "y", 1)] == (1, 18)


class TestDuplicateKeys:
    """PyYAML keeps the last of two equal keys silently: we report it."""

    def test_nested_duplicate(self, tmp_path: Path) -> None:
        """A duplicate deep inside is an error at the second key, naming the first line."""
        doc = located(tmp_path, "a:\n  b: 1\n  b: 2\n")
        assert [(d.code, d.line, d.column, d.field) for d in doc.diagnostics] == [
            ("duplicate-key", 3, 3, "a.b")]
        assert "first at line 2" in doc.diagnostics[0].message
        assert doc.value == {"a": {"b": 1}}  # the first one is kept

    def test_merge_keys_are_not_duplicates(self, tmp_path: Path) -> None:
        """'<<' merges may be overridden by explicit keys without a complaint."""
        doc = located(tmp_path, "base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  y: 3\n")
        assert doc.diagnostics == ()
        assert doc.value["d"] == {"x": 1, "y": 3}

    def test_equal_scalars_of_other_spelling(self, tmp_path: Path) -> None:
        """Keys equal after YAML resolution (1 and 0x1) are duplicates too."""
        doc = located(tmp_path, "1: a\n0x1: b\n")
        assert [d.code for d in doc.diagnostics] == ["duplicate-key"]


class TestHostileDocuments:
    """Documents meant to hurt the reader give one diagnostic, quickly."""

    def test_billion_laughs(self, tmp_path: Path) -> None:
        """Exponential alias expansion is stopped by a budget."""
        lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
        lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
        doc = located(tmp_path, "\n".join(lines) + "\n")
        assert doc.value is None
        assert [d.code for d in doc.diagnostics] == ["yaml-syntax"]
        assert "too large" in doc.diagnostics[0].message

    def test_recursive_alias(self, tmp_path: Path) -> None:
        """An anchor that contains itself is reported, not followed forever."""
        doc = located(tmp_path, "a: &x [1, *x]\n")
        assert [d.code for d in doc.diagnostics] == ["yaml-syntax"]
        assert "recursive" in doc.diagnostics[0].message

    def test_python_tags_refused(self, tmp_path: Path) -> None:
        """Unsafe tags are a located error and nothing is constructed."""
        doc = located(tmp_path, "system: !!python/object/apply:os.system ['true']\n")
        assert doc.value is None
        assert [(d.code, d.line) for d in doc.diagnostics] == [("yaml-syntax", 1)]

    def test_not_utf8(self, tmp_path: Path) -> None:
        """Bytes that are not text are an error."""
        doc = located(tmp_path, b"system: \xff\xfe\x00bad\n")
        assert [d.code for d in doc.diagnostics] == ["yaml-syntax"]

    @pytest.mark.parametrize("depth", [600, 5000])
    def test_deep_nesting(self, tmp_path: Path, depth: int) -> None:
        """Very deep nesting is one error, not a RecursionError."""
        doc = located(tmp_path, "a: " + "[" * depth + "]" * depth + "\n")
        assert doc.value is None
        assert [d.code for d in doc.diagnostics] == ["yaml-syntax"]


class TestReadWiring:
    """Field checks that need no graph."""

    def test_defaults_apply(self) -> None:
        """Unset server fields take the file's defaults."""
        wiring, diags = read_wiring(CASES / "ok.yaml")
        assert diags == [] and wiring is not None
        assert wiring.slots == 128 and wiring.mode == 0o600
        worker_a, worker_b = wiring.server("worker_a"), wiring.server("worker_b")
        assert worker_a is not None and worker_b is not None
        assert (worker_a.restart, worker_b.restart) == ("on-failure", "never")
        assert (worker_a.backoff_initial, worker_a.backoff_max) == (0.1, 10.0)

    def test_relative_paths_resolve_against_file(self) -> None:
        """Command paths and cwd resolve against the wiring file, not the process cwd."""
        wiring, _ = read_wiring(CASES / "commands.yaml")
        assert wiring is not None
        ok = wiring.server("ok")
        assert ok is not None and ok.argv == (str(CASES / "bin" / "tool.sh"), "--fast")
        assert ok.cwd == str(CASES)
        shell = wiring.server("shell")
        assert shell is not None and shell.argv[0] == "sh"  # bare names stay for PATH

    def test_empty_sections_are_empty(self, tmp_path: Path) -> None:
        """`env:`, `depends_on:`, `defaults:` and `connections:` left empty mean none."""
        tool = json.dumps(str(CASES / "tool.manifest.yaml"))
        path = tmp_path / "e.yaml"
        path.write_text(f"system: e\ndefaults:\nservers:\n  a:\n    command: [sh]\n"
                        f"    manifest: {tool}\n    env:\n    depends_on:\nconnections:\n")
        wiring, diags = read_wiring(path)
        assert wiring is not None and wiring.connections == ()
        assert [d.code for d in diags] == []
        assert schema_errors(yaml.safe_load(path.read_text()), SCHEMA) == []

    @pytest.mark.parametrize(("mode", "bits"), [('"0640"', 0o640), ('"0o600"', 0o600),
                                                ("0644", 0o644), ('"600"', 0o600)])
    def test_mode_spellings(self, tmp_path: Path, mode: str, bits: int) -> None:
        """Octal strings and YAML 1.1 octal integers both work."""
        path = tmp_path / "m.yaml"
        tool = json.dumps(str(CASES / "tool.manifest.yaml"))
        path.write_text(f"system: m\ndefaults: {{mode: {mode}}}\nservers:\n"
                        f"  a: {{command: [sh], manifest: {tool}}}\n")
        wiring, diags = read_wiring(path)
        assert wiring is not None and wiring.mode == bits
        assert [d.code for d in diags] == []


# --- the published JSON Schema, checked with a small validator (no extra dependency) ---


def _resolve(ref: str) -> dict[str, Any]:
    assert ref.startswith("#/$defs/")
    return SCHEMA["$defs"][ref.removeprefix("#/$defs/")]


TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "number": (int, float),
         "integer": int, "null": type(None)}


def schema_errors(value: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
    """Validate ``value`` against the draft 2020-12 subset our schema uses."""
    if "$ref" in schema:
        return schema_errors(value, _resolve(schema["$ref"]), where)
    errs: list[str] = []
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(isinstance(value, TYPES[k]) and not (
                k in ("integer", "number") and isinstance(value, bool)) for k in kinds):
            return [f"{where}: not {' or '.join(kinds)}"]
    if "enum" in schema and not any(value == e and type(value) is type(e)
                                    for e in schema["enum"]):
        errs.append(f"{where}: not in enum")
    if "pattern" in schema and isinstance(value, str) and not re.search(schema["pattern"], value):
        errs.append(f"{where}: does not match {schema['pattern']}")
    for key, test in (("minimum", lambda v, b: v >= b), ("maximum", lambda v, b: v <= b),
                      ("exclusiveMinimum", lambda v, b: v > b)):
        if key in schema and isinstance(value, int | float) and not test(value, schema[key]):
            errs.append(f"{where}: {key}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                errs.append(f"{where}: missing {key}")
        if len(value) < schema.get("minProperties", 0):
            errs.append(f"{where}: too few properties")
        for key, item in value.items():
            if "propertyNames" in schema:
                errs += schema_errors(key, schema["propertyNames"], f"{where}.{key}(name)")
            if key in props:
                errs += schema_errors(item, props[key], f"{where}.{key}")
            elif schema.get("additionalProperties") is False:
                errs.append(f"{where}: unexpected {key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                errs += schema_errors(item, schema["additionalProperties"], f"{where}.{key}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errs.append(f"{where}: too few items")
        if "items" in schema:
            for i, item in enumerate(value):
                errs += schema_errors(item, schema["items"], f"{where}[{i}]")
    if "anyOf" in schema and all(schema_errors(value, s, where) for s in schema["anyOf"]):
        errs.append(f"{where}: matches no anyOf branch")
    if "oneOf" in schema and sum(not schema_errors(value, s, where)
                                 for s in schema["oneOf"]) != 1:
        errs.append(f"{where}: does not match exactly one oneOf branch")
    return errs


class TestJsonSchema:
    """The schema editors use agrees with the files and the code."""

    @pytest.mark.parametrize("path", [ROOT / "examples" / "demo.yaml", CASES / "ok.yaml",
                                      CASES / "directions.yaml", CASES / "cycles.yaml"])
    def test_examples_validate(self, path: Path) -> None:
        """Well-formed wiring files (graph errors aside) satisfy the schema."""
        assert schema_errors(yaml.safe_load(path.read_text()), SCHEMA) == []

    def test_manifest_file_validates(self) -> None:
        """A separate manifest file satisfies the schema's manifest definition."""
        data = yaml.safe_load((CASES / "tool.manifest.yaml").read_text())
        assert schema_errors(data, SCHEMA["$defs"]["manifest"]) == []

    @pytest.mark.parametrize("name", ["types.yaml", "identity.yaml", "commands.yaml"])
    def test_bad_files_fail(self, name: str) -> None:
        """Files with type errors fail the schema too."""
        assert schema_errors(yaml.safe_load((CASES / name).read_text()), SCHEMA)

    def test_fields_match_the_reader(self) -> None:
        """Every field the reader accepts is in the schema, and no other."""
        defs = SCHEMA["$defs"]
        assert set(SCHEMA["properties"]) == set(TOP_FIELDS)
        assert set(SCHEMA["properties"]["defaults"]["properties"]) == set(DEFAULT_FIELDS)
        assert set(defs["server"]["properties"]) == set(SERVER_FIELDS)
        assert set(defs["connection"]["anyOf"][1]["properties"]) == set(CONNECTION_FIELDS)
        assert set(defs["backoff"]["properties"]) == set(BACKOFF_FIELDS)

    def test_validator_rejects(self) -> None:
        """The checker used here does reject what it should (it cannot always pass)."""
        assert schema_errors({"system": "x"}, SCHEMA) == ["$: missing servers"]
        assert schema_errors({"system": "x", "servers": {"a": {"python": "m:f", "command": ["x"],
                                                               "manifest": "f"}}}, SCHEMA)


# --- fuzzing: nothing from outside escapes as an exception ---------------------------

SEED = (CASES / "ok.yaml").read_text()


def _assert_only_diagnostics(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, errors="surrogateescape")
    report = lint_file(path)
    assert all(isinstance(d, Diagnostic) and d.severity in ("error", "warning")
               for d in report.diagnostics)


class TestFuzz:
    """Random and mutated files give diagnostics, never an exception."""

    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.text(alphabet=st.sampled_from(list("ab:-[]{},&*!|>'\"# \n\t01.")), max_size=200))
    def test_random_yaml_text(self, tmp_path: Path, text: str) -> None:
        """Random YAML-ish text."""
        _assert_only_diagnostics(tmp_path, text)

    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(st.tuples(st.integers(0, len(SEED)), st.integers(0, 8),
                              st.text(alphabet=st.sampled_from(list(":-[]{}, \n#&*x1.")),
                                      max_size=4)), min_size=1, max_size=4))
    def test_mutated_reference_file(self, tmp_path: Path,
                                    edits: list[tuple[int, int, str]]) -> None:
        """The reference file with random splices."""
        text = SEED.replace('python_path: ["."]', f"python_path: [{json.dumps(str(CASES))}]")
        for at, cut, insert in edits:
            text = text[:at] + insert + text[at + cut:]
        _assert_only_diagnostics(tmp_path, text)

    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.sampled_from(["system", "python_path", "defaults", "servers", "connections"]),
           st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=6),
                        lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                        max_leaves=12))
    def test_wrong_types_per_field(self, tmp_path: Path, key: str, value: Any) -> None:
        """Any value in any top-level field."""
        data = yaml.safe_load(SEED)
        data["python_path"] = [str(CASES)]
        data[key] = value
        _assert_only_diagnostics(tmp_path, yaml.safe_dump(data))
