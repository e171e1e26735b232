"""The C core under ThreadSanitizer: writer and reader threads, each with its own mapping,
in all three shapes (lossless), checked for data races and for order and count."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import require_tool

ROOT = Path(__file__).resolve().parent.parent
SOURCE = Path(__file__).with_name("test_pipe_tsan_stress.c")


@pytest.fixture(scope="module")
def stress_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = require_tool("gcc")
    out = tmp_path_factory.mktemp("tsan") / "stress"
    sources = sorted(str(p) for p in (ROOT / "csrc").glob("pk_*.c"))
    subprocess.run(
        [
            gcc,
            "-std=c11",
            "-O1",
            "-g",
            "-fsanitize=thread",
            f"-I{ROOT / 'csrc'}",
            str(SOURCE),
            *sources,
            "-o",
            str(out),
            "-lpthread",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out


class TestThreadSanitizer:
    @pytest.mark.parametrize("shape", [0, 1, 2], ids=["one", "multiplexer", "combiner"])
    def test_no_races(self, stress_binary: Path, shape: int) -> None:
        """No ThreadSanitizer report; every message arrives in per-writer order."""
        name = f"/pykernel.test.tsan.{os.getpid()}.{shape}"
        try:
            run = subprocess.run(
                [str(stress_binary), name, str(shape)],
                capture_output=True,
                text=True,
                timeout=120,
                env={**os.environ, "TSAN_OPTIONS": "halt_on_error=1 exitcode=66"},
            )
        finally:
            Path("/dev/shm", name.lstrip("/")).unlink(missing_ok=True)
        assert "ThreadSanitizer" not in run.stderr, run.stderr[-3000:]
        assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-3000:]
