"""A discovery server that finds no passphrase at start fails the boot with exit 78."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import require_root, require_tool

ROOT = Path(__file__).resolve().parent.parent


class TestMissingPassphraseAtStart:
    """Lint only warns about an unset passphrase variable; the server itself refuses."""

    def test_up_fails_the_boot_naming_ex_config(self, tmp_path: Path) -> None:
        """`pykernel up` exits 4 and says 78 (EX_CONFIG); the server is not restarted."""
        require_root()
        unshare = require_tool("unshare")
        wiring = yaml.safe_load((ROOT / "examples" / "discovery.yaml").read_text())
        wiring["python_path"] = [str(ROOT)]
        wiring["system"] = f"pk-noconf-{os.getpid()}"
        wiring["discovery"].pop("passphrase_file")
        wiring["discovery"]["passphrase_env"] = "PK_TEST_PASSPHRASE_UNSET"
        path = tmp_path / "discovery.yaml"
        path.write_text(yaml.safe_dump(wiring))
        env = {k: v for k, v in os.environ.items() if k != "PK_TEST_PASSPHRASE_UNSET"}
        # A fresh network namespace holds only lo: nothing can leave this test.
        done = subprocess.run(
            [unshare, "--net", sys.executable, "-m", "pykernel", "up", str(path),
             "--run-dir", str(tmp_path / "run"), "--ready-timeout", "30"],
            capture_output=True, text=True, timeout=90, env=env, check=False)
        assert done.returncode == 4, done.stdout + done.stderr
        assert "78" in done.stderr and "EX_CONFIG" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
        assert not [n for n in os.listdir("/dev/shm") if wiring["system"] in n]
