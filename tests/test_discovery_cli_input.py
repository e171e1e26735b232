"""Discovery verbs refuse bad input in one typed line, in-process and as ``python -m discovery``.

Binary and non-text ``--config`` files, non-finite or negative durations, interface names no
kernel accepts. Durations are refused by the parser (usage error, exit 2) before any socket
is opened, so no frame is ever sent by these tests.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from discovery.__main__ import main
from discovery._errors import DiscoveryConfigError
from discovery.cli import MAX_SECONDS, cmd_discovery_run
from tests.conftest import require_root

ROOT = Path(__file__).resolve().parents[1]


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pykernel: "), err
    return lines[0]


class TestConfigFile:
    """`discovery run --config FILE` that is not UTF-8 YAML is DiscoveryConfigError, exit 1."""

    @pytest.mark.parametrize(("data", "message"), [
        (b"a: \xd0\xd0\n", r"not UTF-8 text \(byte 3: invalid continuation byte\)"),
        (b"\x7fELF\x02\x01\x01\x00\x00\xff", r"not UTF-8 text \(byte 9"),
        (b"a: \x07\n", r"not YAML/JSON at character 3: unacceptable character U\+0007"),
        (b"a: [1\n", r"not YAML/JSON at line 2, column 1"),
    ])  # fmt: skip
    def test_bad_config_is_one_line(self, capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                    data: bytes, message: str) -> None:
        """The error names the file and where in it; nothing is started."""
        bad = tmp_path / "discovery.yaml"
        bad.write_bytes(data)
        code, out, err = _run(capsys, ["discovery", "run", "--config", str(bad)])
        line = _one_line(err)
        assert code == 1 and out == ""
        assert str(bad) in line
        assert re.search(message, line), line

    @settings(max_examples=80, deadline=None)
    @given(data=st.binary(max_size=64))
    def test_any_bytes_never_escape_untyped(self, data: bytes) -> None:
        """Any bytes before a line discovery does not know: always DiscoveryConfigError.

        The unknown key makes every document that parses invalid too, so discovery never
        starts; what is tested is that no decoding or YAML error escapes untyped.
        """
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "c.yaml"
            path.write_bytes(data + b"\nno_such_option_xyz: 1\n")
            args = argparse.Namespace(config=str(path), lldp_only=True)
            # An unknown key is named as 'discovery options', the rest with the file.
            with pytest.raises(DiscoveryConfigError, match=f"^({re.escape(str(path))}: not "
                               "(UTF-8 text|YAML/JSON)|discovery options: )"):
                cmd_discovery_run(args)


class TestDurations:
    """--interval and --seconds take a finite number of seconds from 0 to a week."""

    @pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "-1", "-0.001",
                                       str(MAX_SECONDS + 1), "1e400"])
    @pytest.mark.parametrize("argv", [["lldp", "send", "--iface", "lo", "--interval"],
                                      ["lldp", "listen", "--iface", "lo", "--seconds"]],
                             ids=["send --interval", "listen --seconds"])
    def test_out_of_range_is_a_usage_error(self, capsys: pytest.CaptureFixture[str],
                                           argv: list[str], value: str) -> None:
        """A non-finite, negative or huge duration is refused by the parser, exit 2."""
        code, out, err = _run(capsys, [*argv[:-1], f"{argv[-1]}={value}"])  # = for "-inf"
        line = _one_line(err)
        assert code == 2 and out == ""
        assert f"argument {argv[-1]}: {value!r} seconds is out of range" in line

    def test_zero_seconds_is_accepted(self, capsys: pytest.CaptureFixture[str]) -> None:
        """`lldp listen --seconds 0` is valid: it listens for no time and reports nothing."""
        require_root()
        code, out, err = _run(capsys, ["lldp", "listen", "--iface", "lo", "--seconds", "0",
                                       "--json"])
        assert (code, err) == (0, "")
        assert '"frames": []' in out


class TestInterfaceNames:
    """An interface name the kernel cannot look up is InterfaceError, not ValueError."""

    @pytest.mark.parametrize("name", ["a\x00b", "no-such-iface-xyz", "x" * 40, "\udcff"])
    def test_bad_name_is_one_line(self, capsys: pytest.CaptureFixture[str], name: str) -> None:
        """A name with a NUL, unknown, too long or not encodable is named in one line, exit 1."""
        code, _, err = _run(capsys, ["lldp", "listen", "--iface", name, "--seconds", "0"])
        assert code == 1
        assert "does not exist in this network namespace" in _one_line(err)

    @settings(max_examples=100, deadline=None)
    @given(name=st.text(max_size=20))
    def test_any_name_listens_or_fails_typed(self, name: str) -> None:
        """Any text as --iface (listening 0 s): exit 0, or exit 1 with one line."""
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["lldp", "listen", f"--iface={name}", "--seconds", "0"])
        assert code in (0, 1), err.getvalue()
        if code:
            _one_line(err.getvalue())


class TestRealProcess:
    """`python -m discovery` keeps the pykernel CLI's error rules as a process."""

    def test_bad_inputs_as_processes(self, tmp_path: Path) -> None:
        """A binary config exits 1 and a nan duration exits 2, each with one line."""
        bad = tmp_path / "bin.yaml"
        bad.write_bytes(b"a: \xd0\xd0\n")
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYKERNEL_RUN_DIR": str(tmp_path)}
        cases = [(["discovery", "run", "--config", str(bad)], 1),
                 (["lldp", "listen", "--iface", "lo", "--seconds", "nan"], 2)]
        for argv, want in cases:
            proc = subprocess.run([sys.executable, "-m", "discovery", *argv], env=env,
                                  cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, timeout=60, check=False)
            assert proc.returncode == want, (argv, proc.stderr)
            assert proc.stdout == ""
            _one_line(proc.stderr)
