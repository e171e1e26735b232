"""Discovery verbs and options: state files, one-line errors, running without scapy."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from discovery import Candidate, DiscoveryConfigError, Hints, ProbeResult, StateFileError
from discovery.__main__ import main
from discovery.config import load_config
from discovery.state import write_state

ROOT = Path(__file__).resolve().parents[1]
NO_SCAPY = (
    "import sys; sys.modules['scapy'] = None; "
    "from discovery.__main__ import main; sys.exit(main(sys.argv[1:]))"
)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def candidate(expires_at: float = 4e9) -> Candidate:
    hints = Hints(identity="peer:kernel", beacon_port=7700, transports=("tcp",))
    return Candidate(
        iface="eth0", chassis="02:00:00:00:00:01", port="eth0", identity="peer:kernel",
        address="10.0.0.2", hints=hints, probes=(ProbeResult("tcp", "10.0.0.2:7700", True, 1e-4),),
        beacon_transport="tcp", beacon_rtt_s=2e-3, verified_at=1.0, expires_at=expires_at,
    )  # fmt: skip


class TestStateVerbs:
    def test_nothing_running(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Without a state file the verbs say nothing runs; --json says running false."""
        code, out, _ = run(["neighbors", "--run-dir", str(tmp_path)], capsys)
        assert code == 0 and out.startswith("no discovery service running")
        code, out, _ = run(["candidates", "--json", "--run-dir", str(tmp_path)], capsys)
        data = json.loads(out)
        assert code == 0 and data["running"] is False and data["candidates"] == []

    def test_candidates_from_a_live_writer(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A state file from a live process is shown; expired entries are left out."""
        live, gone = candidate().to_json(), candidate(expires_at=1.0).to_json()
        body = {"identity": "me:kernel", "failures": [], "candidates": [live, gone]}
        write_state(tmp_path / "discovery-candidates.json", "candidates", body)
        _, out, _ = run(["candidates", "--json", "--run-dir", str(tmp_path)], capsys)
        data = json.loads(out)
        assert data["running"] and [c["identity"] for c in data["candidates"]] == ["peer:kernel"]
        assert Candidate.from_json(data["candidates"][0]) == candidate()
        _, out, _ = run(["candidates", "--run-dir", str(tmp_path)], capsys)
        assert "peer:kernel" in out and "tcp:0.10ms" in out and "1 candidates" in out

    def test_stale_state_is_not_running(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A state file left by a dead process is reported as not running."""
        (tmp_path / "discovery-neighbors.json").write_text(json.dumps(
            {"format": 1, "kind": "neighbors", "pid": 2**22 + 7, "neighbors": []}))  # fmt: skip
        code, out, _ = run(["neighbors", "--json", "--run-dir", str(tmp_path)], capsys)
        assert code == 0 and json.loads(out)["running"] is False

    @pytest.mark.parametrize(("text", "message"), [
        ("{not json", r"discovery-neighbors.json: not JSON \(line 1, column 2\)"),
        ('{"format": 1, "kind": "candidates"}', r"not a neighbors state file"),
        ('{"format": 9, "kind": "neighbors"}', r"format 9 unknown"),
    ])  # fmt: skip
    def test_bad_state_file_is_one_line(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
    ) -> None:
        """A corrupt state file is one error line naming the file, exit 1."""
        (tmp_path / "discovery-neighbors.json").write_text(text)
        code, out, err = run(["neighbors", "--run-dir", str(tmp_path)], capsys)
        assert code == 1 and out == "" and err.count("\n") == 1
        assert re.search(message, err)

    def test_candidate_record_malformed(self) -> None:
        """A malformed candidate record is a StateFileError."""
        with pytest.raises(StateFileError, match="candidate record malformed"):
            Candidate.from_json({"iface": "eth0"})

    def test_servers_are_described(self, capsys: pytest.CaptureFixture[str]) -> None:
        """`discovery servers --json` lists the entries the kernel can start."""
        _, out, _ = run(["discovery", "servers", "--json"], capsys)
        assert [s["entry"] for s in json.loads(out)] == [
            "discovery.servers:lldp_agent", "discovery.servers:discovery"]  # fmt: skip


class TestOptions:
    @pytest.mark.parametrize(("options", "message"), [
        ({"bogus": 1}, r"discovery options: unknown option 'bogus'"),
        ({"tx_interval": "fast"}, r"tx_interval has the wrong type: 'fast'"),
        ({"hold": True}, r"hold must not be a boolean"),
        ({"hold": 0}, r"hold 0 outside 1-100"),
        ({"beacon_port": 70000}, r"beacon_port 70000 outside 0-65535"),
        ({"interfaces": ["eth0", 3]}, r"interfaces must be a list of names"),
        ({"beacon_transport": "sctp"}, r"beacon_transport must be tcp or udp"),
        ([1, 2], r"expected a mapping, got list"),
    ])  # fmt: skip
    def test_bad_options(self, options: object, message: str) -> None:
        """Bad options are refused naming the option and value."""
        with pytest.raises(DiscoveryConfigError, match=message):
            load_config(options)  # type: ignore[arg-type]

    @settings(max_examples=200, deadline=None)
    @given(st.dictionaries(
        st.sampled_from(["hold", "tx_interval", "interfaces", "identity", "bogus", "beacon"]),
        st.one_of(st.integers(), st.floats(), st.text(max_size=5), st.booleans(),
                  st.lists(st.text(max_size=3), max_size=2), st.none()),
    ))  # fmt: skip
    def test_any_mapping_loads_or_is_refused(self, options: dict[str, object]) -> None:
        """Arbitrary option mappings load or raise DiscoveryConfigError, nothing else."""
        try:
            load_config(options)
        except DiscoveryConfigError as exc:
            assert str(exc).startswith("discovery options:")

    def test_run_with_bad_config_file(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`discovery run` refuses a bad file with one line, before touching the network."""
        cfg = tmp_path / "d.yaml"
        cfg.write_text("tx_interval: [1\n")
        code, _, err = run(["discovery", "run", "--config", str(cfg)], capsys)
        assert code == 1 and err.count("\n") == 1
        assert re.search(r"d\.yaml: not YAML/JSON at line 2, column 1: expected ',' or ']'", err)
        cfg.write_text("holdd: 3\n")
        code, _, err = run(["discovery", "run", "--config", str(cfg)], capsys)
        assert err == "pykernel: discovery options: unknown option 'holdd'\n"

    def test_missing_passphrase(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The beacon without a passphrase is one line naming where to put it."""
        monkeypatch.delenv("PYKERNEL_BEACON_PASSPHRASE", raising=False)
        cfg = tmp_path / "d.json"
        cfg.write_text(json.dumps({"interfaces": ["pk-none"], "run_dir": str(tmp_path)}))
        code, _, err = run(["discovery", "run", "--config", str(cfg)], capsys)
        assert code == 1
        assert err == ("pykernel: beacon needs a passphrase: set passphrase_file or "
                       "$PYKERNEL_BEACON_PASSPHRASE\n")  # fmt: skip


class TestWithoutScapy:
    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        return subprocess.run([sys.executable, "-c", NO_SCAPY, *argv], capture_output=True,
                              text=True, cwd=ROOT, env=env, timeout=30)  # fmt: skip

    def test_frame_verbs_fail_with_one_line(self) -> None:
        """Verbs that build frames name the missing extra in one line, exit 1."""
        expected = ("pykernel: scapy is not installed: LLDP frames need the discovery extra "
                    "(pip install 'pykernel[discovery]')\n")  # fmt: skip
        p = self._run("lldp", "send", "--iface", "lo")
        assert (p.returncode, p.stderr) == (1, expected)
        p = self._run("discovery", "run", "--lldp-only")
        assert (p.returncode, p.stderr) == (1, expected)

    def test_reading_verbs_work(self, tmp_path: Path) -> None:
        """`neighbors` and `candidates` need no scapy."""
        p = self._run("neighbors", "--json", "--run-dir", str(tmp_path))
        assert p.returncode == 0 and json.loads(p.stdout)["running"] is False

    def test_the_package_does_not_import_scapy(self) -> None:
        """Importing discovery (and pykernel) never imports scapy."""
        code = "import sys, pykernel, discovery, discovery.cli; print('scapy' in sys.modules)"
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           cwd=ROOT, timeout=30)  # fmt: skip
        assert p.stdout.strip() == "False"


class TestPublicSurface:
    def test_exports_are_documented_and_typed_errors_root_in_pykernel(self) -> None:
        """Every name discovery exports exists, has a docstring; its errors are PykernelErrors."""
        import discovery
        from pykernel import PykernelError

        for name in discovery.__all__:
            obj = getattr(discovery, name)
            assert obj.__doc__, name
            if name.endswith("Error"):
                assert issubclass(obj, PykernelError), name
