"""`pykernel status|events|connect|disconnect|graph` against a running control surface."""

from __future__ import annotations

import json
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_surface_kit import booted, plan_of

from control.surface import Surface
from pykernel.cli import main


@pytest.fixture
def surface(tmp_path: Path) -> Iterator[Surface]:
    """A read-only surface over a booted state, its run dir in tmp_path/run."""
    s = Surface(booted(plan_of(tmp_path), pid=4321), run_dir=tmp_path / "run").start()
    yield s
    s.stop()


def _run(capsys, *argv: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


class TestStatus:
    """pykernel status."""

    def test_json_by_run_dir(self, surface: Surface, capsys) -> None:  # type: ignore[no-untyped-def]
        """--run-dir finds the URL; --json has system, servers, connections."""
        code, out, _ = _run(capsys, "status", "--run-dir", str(surface.run_dir), "--json")
        data = json.loads(out)
        assert code == 0
        assert data["system"]["state"] == "running"
        assert [s["name"] for s in data["servers"]] == ["a", "b", "sink", "spare", "src"]
        assert len(data["connections"]) == 4

    def test_text_by_env(self, surface: Surface, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
        """$PYKERNEL_RUN_DIR works too; the text has a server table and connection flow."""
        monkeypatch.setenv("PYKERNEL_RUN_DIR", str(surface.run_dir))
        code, out, _ = _run(capsys, "status")
        assert code == 0
        assert out.startswith("system t: running")
        assert "src     running  4321" in out
        assert "src.out -> a.inp" in out and "open · 0 msg/s" in out

    def test_unreachable(self, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
        """No kernel: one line, non-zero exit."""
        code, out, err = _run(capsys, "status", "--run-dir", str(tmp_path))
        assert code != 0 and out == ""
        assert err.count("\n") == 1 and "no running control surface" in err

    def test_dead_url(self, capsys) -> None:  # type: ignore[no-untyped-def]
        """A URL where nothing listens: one line naming it."""
        code, _, err = _run(capsys, "status", "--url", "http://127.0.0.1:9", "--json")
        assert code != 0 and "no control surface at http://127.0.0.1:9" in err


class TestEvents:
    """pykernel events."""

    def test_events_json_and_text(self, surface: Surface, capsys) -> None:  # type: ignore[no-untyped-def]
        """--json lists events; text shows seq, kind, subject, move and cause."""
        code, out, _ = _run(capsys, "events", "--url", surface.url, "--json", "--limit", "3")
        events = json.loads(out)
        assert code == 0 and len(events) == 3
        assert events[-1]["seq"] == surface.state.system_json()["last_event"]
        _, text, _ = _run(capsys, "events", "--url", surface.url, "--since", "0")
        assert "kernel     t: booting -> running (kernel: boot complete)" in text


class TestModifyRefusals:
    """connect/disconnect refusals come back as one line with the reason."""

    def test_connect_refused(self, surface: Surface, capsys) -> None:  # type: ignore[no-untyped-def]
        """A lint-rule refusal: exit 1, the rule in the message."""
        code, _, err = _run(capsys, "connect", "spare.out", "a.inp", "--run-dir",
                            str(surface.run_dir))
        assert code == 1 and "422" in err and "plain input" in err

    def test_connect_without_token(self, surface: Surface, capsys) -> None:  # type: ignore[no-untyped-def]
        """--url alone has no token: 401 explained."""
        code, _, err = _run(capsys, "connect", "spare.out", "spare.inp", "--url", surface.url)
        assert code == 1 and "401" in err and "Bearer" in err

    def test_disconnect_unknown(self, surface: Surface, capsys) -> None:  # type: ignore[no-untyped-def]
        """An unknown ID is named."""
        code, _, err = _run(capsys, "disconnect", "c-nope", "--run-dir", str(surface.run_dir))
        assert code == 1 and "unknown connection 'c-nope'" in err


class TestGraph:
    """pykernel graph."""

    @pytest.mark.parametrize(("fmt", "head"), [("dot", "digraph"), ("mermaid", "flowchart")])
    def test_formats(self, surface: Surface, capsys, fmt: str, head: str) -> None:  # type: ignore[no-untyped-def]
        """Prints the diagram; --json wraps it."""
        code, out, _ = _run(capsys, "graph", "--format", fmt, "--url", surface.url)
        assert code == 0 and out.startswith(head)
        _, out, _ = _run(capsys, "graph", "--format", fmt, "--url", surface.url, "--json")
        assert json.loads(out)["format"] == fmt

    def test_real_command(self, surface: Surface) -> None:
        """The installed `pykernel` program: bad format is a usage error (exit 2)."""
        done = subprocess.run([sys.executable, "-m", "pykernel", "graph", "--format", "png",
                               "--url", surface.url], capture_output=True, text=True,
                              check=False, timeout=60)
        assert done.returncode == 2 and "invalid choice: 'png'" in done.stderr


class TestFollow:
    """pykernel events --follow."""

    def test_new_events_are_printed(self, surface: Surface) -> None:
        """A move made after the command started shows up on its output."""
        proc = subprocess.Popen([sys.executable, "-m", "pykernel", "events", "--follow",
                                 "--limit", "1", "--url", surface.url],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            first = _readline(proc)
            assert "kernel" in first and "booting -> running" in first
            surface.state.server_to("spare", "stopped", "test: follow me")
            line = _readline(proc)
            assert "server     spare: running -> stopped (test: follow me)" in line
        finally:
            proc.kill()
            proc.wait(timeout=10)


def _readline(proc: subprocess.Popen[str], timeout: float = 15.0) -> str:
    """One line of the child's output, or fail after ``timeout`` (never hang the suite)."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "no output in time"
    return proc.stdout.readline()
