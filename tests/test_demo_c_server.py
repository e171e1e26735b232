"""The C example server (examples/c_server): built from csrc/ alone, run by the kernel."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require_tool
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control.kernel import Kernel
from control.plan import build_plan
from pykernel import Pipe

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "c_server"


def compile_upper(dest: Path) -> Path:
    """Compile pk_upper.c with the pipe core's C sources only (no Python)."""
    cc = require_tool("gcc")
    binary = dest / "build" / "pk-upper"
    binary.parent.mkdir(parents=True, exist_ok=True)
    sources = sorted(str(p) for p in (REPO / "csrc").glob("pk_*.c"))
    subprocess.run([cc, "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror",
                    f"-I{REPO / 'csrc'}", "-o", str(binary), str(EXAMPLE / "pk_upper.c"),
                    *sources], check=True, capture_output=True, text=True)
    return binary


@pytest.fixture(scope="module")
def upper_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_upper(tmp_path_factory.mktemp("cbuild"))


@pytest.fixture
def example(tmp_path: Path, upper_binary: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """The example's wiring and servers in tmp_path, under a system name of its own."""
    system = f"c{uuid.uuid4().hex[:10]}"
    text = (EXAMPLE / "wiring.yaml").read_text()
    assert "system: cdemo\n" in text
    (tmp_path / "wiring.yaml").write_text(text.replace("system: cdemo\n", f"system: {system}\n"))
    shutil.copy(EXAMPLE / "c_demo_servers.py", tmp_path)
    (tmp_path / "build").mkdir()
    shutil.copy(upper_binary, tmp_path / "build" / "pk-upper")
    monkeypatch.syspath_prepend(str(tmp_path))  # lint imports the python entries
    yield tmp_path / "wiring.yaml", system
    for name in os.listdir("/dev/shm"):
        if name.startswith(f"pykernel.{system}."):
            os.unlink(f"/dev/shm/{name}")


def wait_report(path: Path, key: str, value: int, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            data = json.loads(path.read_text())
            if data.get(key, 0) >= value:
                return data
        except (OSError, ValueError):
            pass
        assert time.monotonic() < deadline, f"{path.name}: {key} never reached {value}"
        time.sleep(0.05)


class TestCServer:
    """feeder (python) → pk-upper (C) → checker (python)."""

    def test_every_line_upper_cased_in_order(self, example: tuple[Path, str],
                                             tmp_path: Path, monkeypatch) -> None:
        """1000 lines pass through the C server, each verified; it stops cleanly on SIGTERM."""
        monkeypatch.setenv("DEMO_MESSAGES", "1000")
        wiring, system = example
        run_dir = tmp_path / "run"
        with Kernel(build_plan(wiring), run_dir=run_dir, builtins=()) as kernel:
            upper = kernel.status().service("upper")
            assert upper.state.value == "running"
            wait_report(run_dir / "checker-report.json", "verified", 1000)
        final = kernel.status()
        assert final.service("upper").reason == "stopped (exit code 0)"
        report = json.loads((run_dir / "checker-report.json").read_text())
        assert (report["received"], report["verified"], report["errors"]) == (1000, 1000, 0)
        assert report["final"] is True
        assert "pk-upper: passed 1000 messages, dropped 0" in (run_dir / "upper.log").read_text()
        assert not [n for n in os.listdir("/dev/shm") if n.startswith(f"pykernel.{system}.")]


class TestCServerEnvironment:
    """The C server's reading of PYKERNEL_TERMINALS is strict and never crashes."""

    def run_upper(self, binary: Path, terminals: str | None) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYKERNEL_")}
        if terminals is not None:
            env["PYKERNEL_TERMINALS"] = terminals
        return subprocess.run([str(binary)], env=env, capture_output=True, text=True,
                              timeout=10)

    def test_without_kernel(self, upper_binary: Path) -> None:
        """Run by hand, it says it needs pykernel up (exit 3)."""
        result = self.run_upper(upper_binary, None)
        assert result.returncode == 3
        assert "PYKERNEL_TERMINALS is not set" in result.stderr

    @pytest.mark.parametrize(
        ("terminals", "message"),
        [
            ("{}", "no connected terminal 'in'"),
            ('{"in": {"pipe": null}}', "no connected terminal 'in'"),
            ('{"in": {"pipe": "x\\"y"}, "out": {}}', "no connected terminal 'in'"),
            ('{"in": {"pipe": "nonexistent-pk-test"}, "out": {"pipe": "b"}}',
             "cannot open pipe nonexistent-pk-test for terminal 'in'"),
        ],
    )
    def test_bad_terminals(self, upper_binary: Path, terminals: str, message: str) -> None:
        """Missing or unusable terminals are named; exit 3."""
        result = self.run_upper(upper_binary, terminals)
        assert result.returncode == 3
        assert message in result.stderr

    def test_finds_pipe_whatever_the_key_order(self, upper_binary: Path) -> None:
        """Keys in any order, nested values skipped: the 'in' pipe is found (and opened)."""
        name = f"ct{uuid.uuid4().hex[:10]}"
        terminals = json.dumps({"zz": {"a": [1, {"b": "}"}]},
                                "out": {"shape": [2], "pipe": "missing-out"},
                                "in": {"role": "reader", "x": "\\\"", "pipe": name}})
        with Pipe.create(name, slot_size=64, slots=8):
            try:
                result = self.run_upper(upper_binary, terminals)
            finally:
                Pipe.unlink(name)
        assert result.returncode == 3
        assert "cannot open pipe missing-out for terminal 'out'" in result.stderr

    @settings(max_examples=60, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    # No NUL and no lone surrogates: neither can be put into a process environment.
    @given(
        st.text(
            alphabet=st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)),
            max_size=120,
        )
    )
    def test_fuzzed_terminals_never_crash(self, upper_binary: Path, text: str) -> None:
        """Arbitrary PYKERNEL_TERMINALS text ends in exit 3 with a message, never a signal."""
        result = self.run_upper(upper_binary, text)
        assert result.returncode == 3, (text, result.returncode, result.stderr)
        assert result.stderr.startswith("pk-upper: ")
