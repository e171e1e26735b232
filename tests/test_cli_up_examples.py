"""The examples a newcomer runs with `pykernel up` lint clean and plan as documented."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from control.lint import lint_file
from control.plan import build_plan

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "discovery.yaml"


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """examples/discovery.yaml copied beside a fresh 0600 passphrase file (as its header says)."""
    wiring = yaml.safe_load(EXAMPLE.read_text())
    wiring["python_path"] = [str(ROOT)]
    path = tmp_path / "discovery.yaml"
    path.write_text(yaml.safe_dump(wiring))
    secret = tmp_path / "beacon.secret"
    secret.write_text(os.urandom(24).hex() + "\n")
    secret.chmod(0o600)
    return path


class TestDiscoveryExample:
    """examples/discovery.yaml: a watcher fed by the discovery server."""

    def test_needs_scapy_for_a_clean_lint(self) -> None:
        """The clean lint below assumes scapy's LLDP module (the discovery extra)."""
        import scapy.contrib.lldp  # noqa: F401  (the discovery extra is installed here)

    def test_lints_clean(self, example: Path) -> None:
        """No errors and no warnings; `pykernel lint` exits 0."""
        assert lint_file(example).diagnostics == ()
        done = subprocess.run([sys.executable, "-m", "pykernel", "lint", str(example)],
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stdout + done.stderr

    def test_plans_discovery_as_a_server(self, example: Path) -> None:
        """discovery starts first; watch reads its candidates; the secret is only a path."""
        plan = build_plan(example)
        assert plan.start_order == ("discovery", "watch")
        (conn,) = plan.connections
        assert (conn.source, conn.target) == ("discovery.candidates", "watch.events")
        options = json.loads(plan.server("discovery").env["PYKERNEL_DISCOVERY_OPTIONS"])
        assert options["passphrase_file"] == str(example.parent / "beacon.secret")
        assert "passphrase" not in options and options["tags"] == ["example"]

    def test_missing_secret_is_named(self, example: Path) -> None:
        """Without the passphrase file lint fails with passphrase-file, pointing at it."""
        (example.parent / "beacon.secret").unlink()
        assert [d.code for d in lint_file(example).errors] == ["passphrase-file"]

    def test_the_committed_file_needs_only_the_secret(self, tmp_path: Path) -> None:
        """In place, the only error is the passphrase file the header tells you to make."""
        copy = tmp_path / "examples"
        shutil.copytree(ROOT / "examples", copy, ignore=shutil.ignore_patterns("beacon.secret",
                                                                               "__pycache__"))
        assert [d.code for d in lint_file(copy / "discovery.yaml").errors] == ["passphrase-file"]
