"""The wiring file's `discovery:` section: checked, located, planned as an ordinary server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control.errors import WiringError
from control.lint import lint_file
from control.plan import Plan, build_plan
from control.wiring_discovery import (
    DISCOVERY_ENTRY,
    DISCOVERY_FIELDS,
    DISCOVERY_MANIFEST,
    OPTION_FIELDS,
    OPTIONS_ENV,
)
from control.wiring_read import read_wiring
from discovery.config import DiscoveryConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "control" / "wiring.schema.json").read_text())
SINK = '''\
from control.manifest import manifest, terminal

@manifest(servername="events", class_hex="0x20", owner="tests",
          terminals=[terminal("inp", "input", message_size=4096, required=False)])
def events(ctx):
    """Read candidate events."""
'''


def write(tmp_path: Path, body: str, name: str = "w.yaml") -> Path:
    """Write a wiring file (dedented) next to a 0600 passphrase file."""
    secret = tmp_path / "beacon.secret"
    if not secret.exists():
        secret.write_text("a long shared passphrase\n")
        secret.chmod(0o600)
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def section(tmp_path: Path, lines: str, servers: str = "servers: {}") -> Path:
    """A file with ``servers`` and a discovery section made of ``lines``."""
    body = f"system: lab\n{servers}\ndiscovery:\n" + textwrap.indent(textwrap.dedent(lines), "  ")
    return write(tmp_path, body)


def codes(path: Path) -> list[tuple[str, str, str, int]]:
    """(severity, code, field, line) of every diagnostic."""
    return [(d.severity, d.code, d.field, d.line) for d in lint_file(path).diagnostics]


GOOD = """\
interfaces: [eth0, "veth*"]
tx_interval: 1.5
hold: 4
passphrase_file: beacon.secret
hostess_db: state/hostess.sqlite
tags: [lab, rack-3]
identity: h1.lab:kernel
beacon_transport: udp
"""


class TestPlannedServer:
    def test_section_becomes_an_ordinary_server(self, tmp_path: Path) -> None:
        """The section plans `discovery`: python entry, manifest, restart on-failure, options."""
        plan = build_plan(section(tmp_path, GOOD))
        (server,) = plan.servers
        assert (server.name, server.kind, server.entry) == ("discovery", "python", DISCOVERY_ENTRY)
        assert server.manifest == DISCOVERY_MANIFEST and server.restart == "on-failure"
        assert server.terminals == {} and plan.start_order == ("discovery",)
        assert server.cwd == str(tmp_path)
        options = json.loads(server.env[OPTIONS_ENV])
        assert options == {
            "interfaces": ["eth0", "veth*"], "tx_interval": 1.5, "hold": 4,
            "passphrase_file": str(tmp_path / "beacon.secret"),
            "hostess_db": str(tmp_path / "state" / "hostess.sqlite"),
            "tags": ["lab", "rack-3"], "identity": "h1.lab:kernel", "beacon_transport": "udp",
        }  # fmt: skip
        assert server.env["PYKERNEL_SERVER"] == "discovery"
        assert server.env["PYKERNEL_CONNECTOME"] == plan.connectome_id

    def test_name_restart_and_backoff(self, tmp_path: Path) -> None:
        """`name`, `restart` and `backoff` shape the server, not its options."""
        plan = build_plan(section(tmp_path, """\
            name: lldp
            restart: always
            backoff: {initial: 1, max: 20}
            passphrase_file: beacon.secret
            """))
        server = plan.server("lldp")
        assert (server.restart, server.backoff_initial, server.backoff_max) == ("always", 1, 20)
        assert json.loads(server.env[OPTIONS_ENV]) == {
            "passphrase_file": str(tmp_path / "beacon.secret")}

    def test_beside_other_servers_and_connectable(self, tmp_path: Path) -> None:
        """Other servers may depend on it and read its `candidates` output."""
        (tmp_path / "sinkmod.py").write_text(SINK)
        path = write(tmp_path, """\
            system: lab
            python_path: ["."]
            servers:
              events: {python: "sinkmod:events", depends_on: [discovery]}
            connections:
              - discovery.candidates -> events.inp
            discovery: {passphrase_file: beacon.secret}
            """)
        assert codes(path) == []
        plan = build_plan(path)
        assert plan.start_order == ("discovery", "events")
        binding = plan.server("discovery").terminals["candidates"]
        assert (binding.role, binding.pipe) == ("writer", "lab.discovery.candidates")

    def test_unconnected_candidates_output_is_not_warned(self, tmp_path: Path) -> None:
        """Its optional output left alone is no `unused-output` warning."""
        assert codes(section(tmp_path, "passphrase_file: beacon.secret\n")) == []

    def test_disabled_section_changes_nothing(self, tmp_path: Path) -> None:
        """`enabled: false` plans exactly what the file without the section plans."""
        servers = 'python_path: ["."]\nservers:\n  events: {python: "sinkmod:events"}'
        (tmp_path / "sinkmod.py").write_text(SINK)
        without = write(tmp_path, f"system: lab\n{servers}\n", "without.yaml")
        disabled = section(tmp_path, "enabled: false\ntx_interval: 0.5\n", servers)
        assert build_plan(disabled).to_json() == build_plan(without).to_json()
        wiring, _ = read_wiring(disabled)
        assert wiring is not None and wiring.discovery is not None
        assert not wiring.discovery.enabled

    def test_disabled_section_needs_servers(self, tmp_path: Path) -> None:
        """With discovery off, an empty `servers` is an error as before."""
        path = section(tmp_path, "enabled: false\n")
        assert ("error", "type", "servers", 2) in codes(path)

    def test_plan_is_deterministic_across_hash_seeds(self, tmp_path: Path) -> None:
        """The same file gives the same bytes in processes with different hash seeds."""
        path = section(tmp_path, GOOD)
        code = "import sys; from control.plan import build_plan; " \
               "sys.stdout.write(build_plan(sys.argv[1]).to_json())"
        outs = {
            subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                           text=True, check=True, cwd=ROOT, timeout=60,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout
            for seed in ("0", "1", "4242")
        }  # fmt: skip
        assert len(outs) == 1
        (text,) = outs
        assert text == build_plan(path).to_json()
        assert Plan.from_json(text) == build_plan(path)


BAD = [
    ("tx_interval: 0", "invalid-value", "discovery.tx_interval", "tx_interval 0 must be"),
    ("hold: 1.5", "invalid-value", "discovery.hold", "must be an integer in 1..100"),
    ("hold: true", "invalid-value", "discovery.hold", "hold True"),
    ("echo_port: 70000", "invalid-value", "discovery.echo_port", "0..65535"),
    ("transports: [TCP]", "invalid-name", "discovery.transports[0]", "'TCP' must match"),
    ("transports: tcp", "type", "discovery.transports", "must be a list of names"),
    ("interfaces: [eth0, 3]", "type", "discovery.interfaces[1]", "non-empty string"),
    ("beacon_transport: sctp", "invalid-value", "discovery.beacon_transport", "tcp, udp"),
    ("enabled: 'yes'", "type", "discovery.enabled", "true or false"),
    ("passphrase_env: 1BAD", "invalid-name", "discovery.passphrase_env", "not an environment"),
    ("tags: ['a b']", "invalid-name", "discovery.tags[0]", "'a b' must be 1-64 of letters"),
    ("tags: [ok, '-x']", "invalid-name", "discovery.tags[1]", "'-x' must be"),
    ("identity: ''", "invalid-value", "discovery.identity", "printable"),
    ("system_name: 3", "type", "discovery.system_name", "must be a string"),
    ("hostess_db: 3", "type", "discovery.hostess_db", "non-empty file name"),
    ("restart: sometimes", "invalid-restart", "discovery.restart", "must be one of"),
    ("name: 'no.dots'", "invalid-name", "discovery.name", "must match"),
    ("intervals: 3", "unknown-field", "discovery.intervals", "unknown field 'intervals'"),
    ("passphrase: hunter2", "secret-in-wiring", "discovery.passphrase", "never write"),
    ("run_dir: /x", "unknown-field", "discovery.run_dir", "unknown field"),
]


class TestBadValues:
    @pytest.mark.parametrize(("line", "code", "field", "text"), BAD)
    def test_located_error(self, tmp_path: Path, line: str, code: str, field: str,
                           text: str) -> None:
        """Each bad field is one located error naming the value."""
        path = section(tmp_path, f"passphrase_file: beacon.secret\n{line}\n")
        (diag,) = lint_file(path).errors
        assert (diag.severity, diag.code, diag.field, diag.line) == ("error", code, field, 5)
        assert text in diag.message
        assert diag.column >= 3  # the key, or the list item

    def test_identity_peers_cannot_register_is_warned(self, tmp_path: Path) -> None:
        """An identity that makes no Hostess identity (bad host name) is a warning."""
        path = section(tmp_path, "passphrase_file: beacon.secret\nidentity: my_host:kernel\n")
        (diag,) = lint_file(path).diagnostics
        assert (diag.severity, diag.code, diag.field) == (
            "warning", "identity-not-hostess", "discovery.identity")
        assert "my_host" in diag.message and "RFC 1123" in diag.message

    def test_several_errors_at_once(self, tmp_path: Path) -> None:
        """Every bad field is reported, each at its own line; the plan refuses the file."""
        path = section(tmp_path, "hold: 0\npassphrase_file: beacon.secret\nfast_start: 9\n")
        assert [(c, f, n) for _, c, f, n in codes(path)] == [
            ("invalid-value", "discovery.hold", 4), ("invalid-value", "discovery.fast_start", 6)]
        with pytest.raises(WiringError, match=r"w\.yaml:4:3: error\[invalid-value\] discovery"):
            build_plan(path)

    def test_section_not_a_mapping(self, tmp_path: Path) -> None:
        """A list where the section belongs is a type error at its key."""
        path = write(tmp_path, "system: lab\nservers: {}\ndiscovery: [eth0]\n")
        assert ("error", "type", "discovery", 3) in codes(path)

    def test_name_taken_by_a_server(self, tmp_path: Path) -> None:
        """The discovery server may not share a name with a declared server."""
        (tmp_path / "sinkmod.py").write_text(SINK)
        path = write(tmp_path, """\
            system: lab
            python_path: ["."]
            servers:
              discovery: {python: "sinkmod:events"}
            discovery: {passphrase_file: beacon.secret}
            """)
        assert codes(path) == [("error", "duplicate-name", "discovery", 5)]


class TestPassphraseFile:
    def test_missing_file(self, tmp_path: Path) -> None:
        """A passphrase file that does not exist is an error naming it."""
        path = section(tmp_path, "passphrase_file: nope.secret\n")
        (diag,) = lint_file(path).diagnostics
        assert (diag.code, diag.field, diag.line) == (
            "passphrase-file", "discovery.passphrase_file", 4)
        assert "'nope.secret': No such file or directory" in diag.message

    def test_directory_and_empty_file(self, tmp_path: Path) -> None:
        """A directory or an empty file holds no passphrase."""
        (tmp_path / "dir").mkdir()
        (tmp_path / "empty").touch()
        for name, text in (("dir", "is not a regular file"), ("empty", "is empty")):
            (diag,) = lint_file(section(tmp_path, f"passphrase_file: {name}\n")).diagnostics
            assert diag.code == "passphrase-file" and text in diag.message

    def test_world_readable_is_a_warning(self, tmp_path: Path) -> None:
        """A world-readable passphrase file is warned, and the plan still builds."""
        path = section(tmp_path, "passphrase_file: beacon.secret\n")
        (tmp_path / "beacon.secret").chmod(0o644)
        (diag,) = lint_file(path).diagnostics
        assert (diag.severity, diag.code) == ("warning", "passphrase-readable")
        assert "mode 0644" in diag.message
        assert build_plan(path).server("discovery")

    def test_file_and_env_together_warn(self, tmp_path: Path) -> None:
        """With a file the environment variable is never read: said as a warning."""
        path = section(tmp_path, "passphrase_file: beacon.secret\npassphrase_env: MY_PASS\n")
        assert codes(path) == [("warning", "conflicting-fields", "discovery.passphrase_env", 5)]

    def test_unset_passphrase_variable_is_a_warning(self, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
        """Without a file, the variable the server will read is checked here (a warning:
        the kernel's environment may still set it)."""
        monkeypatch.delenv("PYKERNEL_BEACON_PASSPHRASE", raising=False)
        path = write(tmp_path, "system: lab\nservers: {}\ndiscovery:\n")
        (diag,) = lint_file(path).diagnostics
        assert (diag.severity, diag.code, diag.field, diag.line) == (
            "warning", "passphrase-env-unset", "discovery", 3)
        assert "$PYKERNEL_BEACON_PASSPHRASE is not set here" in diag.message
        path = section(tmp_path, "passphrase_env: LAB_PASS\n")
        assert codes(path) == [("warning", "passphrase-env-unset", "discovery.passphrase_env", 4)]
        monkeypatch.setenv("LAB_PASS", "a long shared passphrase")
        assert codes(path) == []
        assert build_plan(path).server("discovery")

    def test_no_file_check_without_beacon(self, tmp_path: Path) -> None:
        """LLDP only (`beacon: false`) needs no passphrase at all."""
        assert codes(section(tmp_path, "beacon: false\n")) == []


class TestScapy:
    def test_missing_scapy_is_an_error_with_the_reason(self, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
        """Discovery enabled without scapy fails lint, saying how to install it."""
        monkeypatch.setitem(sys.modules, "scapy", None)  # find_spec: not importable
        path = section(tmp_path, "passphrase_file: beacon.secret\n")
        (diag,) = lint_file(path).diagnostics
        assert (diag.code, diag.field, diag.line) == ("discovery-needs-scapy", "discovery", 3)
        assert "scapy is not installed" in diag.message and "pykernel[discovery]" in diag.message

    def test_receive_only_needs_no_scapy(self, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
        """Listening only needs no scapy (frames are parsed without it)."""
        monkeypatch.setitem(sys.modules, "scapy", None)
        assert codes(section(tmp_path, "receive_only: true\nbeacon: false\n")) == []

    def test_control_imports_and_lints_without_scapy(self, tmp_path: Path) -> None:
        """In a process where scapy cannot load, control (with its discovery server) still
        imports, and lint names the broken scapy."""
        fake = tmp_path / "fake" / "scapy"
        fake.mkdir(parents=True)
        (fake / "__init__.py").write_text("raise ImportError('scapy is broken here')\n")
        path = section(tmp_path, "passphrase_file: beacon.secret\n")
        code = ("import sys, json; import control.discovery_server, control.plan; "
                "from control.lint import lint_file; "
                "print(json.dumps(lint_file(sys.argv[1]).to_dict()))")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "fake"), str(ROOT)])}
        out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                             text=True, cwd=tmp_path, env=env, timeout=60)
        assert out.returncode == 0, out.stderr
        (diag,) = json.loads(out.stdout)["diagnostics"]
        assert diag["code"] == "discovery-needs-scapy"
        assert "ImportError: scapy is broken here" in diag["message"]


class TestAgreement:
    def test_schema_lists_every_field(self) -> None:
        """The JSON Schema's discovery section has exactly the reader's fields."""
        assert set(SCHEMA["$defs"]["discovery"]["properties"]) == set(DISCOVERY_FIELDS)

    def test_options_are_discovery_config_fields(self) -> None:
        """Every option passed on is a field discovery's config knows."""
        assert set(OPTION_FIELDS) <= {f.name for f in fields(DiscoveryConfig)}

    def test_schema_accepts_a_good_section(self, tmp_path: Path) -> None:
        """A good section satisfies the schema (using the wiring tests' checker)."""
        from test_wiring import schema_errors

        data = yaml.safe_load(section(tmp_path, GOOD).read_text())
        assert schema_errors(data, SCHEMA) == []
        data["discovery"]["hold"] = 0
        assert schema_errors(data, SCHEMA) == ["$.discovery.hold: minimum"]


text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12)
values = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 70000), st.floats(-1, 5000, allow_nan=False),
    text, st.lists(text, max_size=3),
)
options = st.dictionaries(st.sampled_from(OPTION_FIELDS), values, max_size=5)


class TestProperties:
    @settings(max_examples=120, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(options)
    def test_accepted_options_are_accepted_by_discovery(self, tmp_path: Path,
                                                         opts: dict[str, Any]) -> None:
        """Whatever the section accepts, discovery's own check accepts too; rejections are
        located under `discovery`, never exceptions."""
        body = {"system": "lab", "servers": {}, "discovery": opts}
        path = tmp_path / "p.yaml"
        path.write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")  # JSON is YAML
        wiring, diags = read_wiring(path)
        errors = [d for d in diags if d.severity == "error"]
        assert all(d.field.startswith("discovery") and d.line > 0 for d in errors)
        assert wiring is not None and wiring.discovery is not None
        passed = dict(wiring.discovery.options)
        load_config({k: v for k, v in passed.items() if k in OPTION_FIELDS})
        if not errors:
            assert set(passed) == set(opts)

    @settings(max_examples=100, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(st.tuples(st.integers(0, 400), st.integers(0, 6),
                              st.text(st.sampled_from(list(":-[]{}, \n#&*x1.'\"")), max_size=4)),
                    min_size=1, max_size=4))
    def test_mutated_section_gives_diagnostics_only(self, tmp_path: Path,
                                                    edits: list[tuple[int, int, str]]) -> None:
        """A good file with random splices: lint returns diagnostics, never raises."""
        text = section(tmp_path, GOOD).read_text()
        for at, cut, insert in edits:
            text = text[:at] + insert + text[at + cut:]
        path = tmp_path / "m.yaml"
        path.write_text(text)
        report = lint_file(path)
        assert all(d.severity in ("error", "warning") and d.code for d in report.diagnostics)
