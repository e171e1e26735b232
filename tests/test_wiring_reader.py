"""A wiring file that is not text is one diagnostic located at its line:column.

YAML's reader refuses bad UTF-8/UTF-16 and control characters with a byte offset (libyaml)
or a character index (PyYAML); the diagnostic turns it into line:column and keeps to one
line. Both loaders are checked, since libyaml is used only where it is installed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control import wiring
from control.wiring import load_located

LOADERS = [yaml.SafeLoader, *([yaml.CSafeLoader] if hasattr(yaml, "CSafeLoader") else [])]


@pytest.fixture(params=LOADERS, ids=lambda c: c.__name__)
def loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Read wiring files with each YAML loader in turn (libyaml and pure Python)."""
    monkeypatch.setattr(wiring, "_LOADER", request.param)
    yield request.param.__name__


def _read(path: Path, data: bytes) -> wiring.Diagnostic:
    path.write_bytes(data)
    located = load_located(str(path), "w.yaml")
    assert located.value is None
    (diag,) = located.diagnostics
    return diag


class TestNotText:
    """Bytes YAML cannot read are a yaml-syntax error at their line and column."""

    @pytest.mark.parametrize(("data", "line", "column", "message"), [
        (b"\x7fELF\x02\x01", 1, 1, r"not YAML text: #x007f: control characters? are not allowed"
                                   r"|special characters are not allowed"),
        (b"a: 1\nb: \x07\n", 2, 4, r"#x0007: (control|special) characters are not allowed"),
        (b"a: 1\r\nb: \x01", 2, 4, r"#x0001"),
        ("\u00e9t\u00e9: 1\nb: \x07".encode(), 2, 4, r"#x0007"),
        (b"\xef\xbb\xbfa: 1\n\x01", 2, 1, r"#x0001"),
        (b"\xff\xfea\x00\n\x00\x01\x00", 2, 1, r"#x0001"),
    ])  # fmt: skip
    def test_control_characters(self, loader: str, tmp_path: Path, data: bytes, line: int,
                                column: int, message: str) -> None:
        """A control character is found at the same line:column by both loaders (a BOM and
        a multi-byte character before it take no extra column)."""
        diag = _read(tmp_path / "w.yaml", data)
        assert (diag.code, diag.line, diag.column) == ("yaml-syntax", line, column)
        assert re.search(message, diag.message), diag.message

    @pytest.mark.parametrize(("data", "line"), [
        (b"a: \xd0\xd0\n", 1), (b"a: 1\nbb: \xc3(\n", 2), (b"x: 1\n\n\nname: \xff\n", 4),
    ])  # fmt: skip
    def test_bad_utf8(self, loader: str, tmp_path: Path, data: bytes, line: int) -> None:
        """Invalid UTF-8 is located on its line, at (or one after) the bad byte's column."""
        diag = _read(tmp_path / "w.yaml", data)
        bad = data.split(b"\n")[line - 1]
        first = len(bad.split(b": ", 1)[0]) + 3  # the value's column, 1-based
        assert diag.line == line
        assert diag.column in (first, first + 1), diag
        assert diag.message.startswith("not YAML text: #x00")

    def test_the_message_is_one_line(self, loader: str, tmp_path: Path) -> None:
        """No 'in "<byte string>", position N' second line: file:line:col: error ... only."""
        text = _read(tmp_path / "w.yaml", b"\x7fELF\x00\xd0\xd0").format()
        assert "\n" not in text and "<byte string>" not in text
        # libyaml meets the control character first, PyYAML the bad UTF-8 at byte 5.
        assert re.fullmatch(r"w\.yaml:1:[16]: error\[yaml-syntax\] not YAML text: #x00(7f|d0): "
                            r"[a-z -]+", text), text


class TestAnyBytes:
    """Whatever the bytes, reading gives a value or diagnostics, each one line."""

    @settings(max_examples=200, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=st.binary(max_size=48) | st.text(max_size=24).map(str.encode))
    def test_never_raises_and_stays_on_one_line(self, loader: str, tmp_path: Path,
                                                data: bytes) -> None:
        """Diagnostics have no line break, and a located one points inside the file."""
        path = tmp_path / "w.yaml"
        path.write_bytes(data)
        located = load_located(str(path))
        lines = data.count(b"\n") + 1
        for diag in located.diagnostics:
            assert "\n" not in diag.format(), diag
            assert 0 <= diag.line <= lines + 1 and diag.column >= 0, diag
            if diag.message.startswith("not YAML text"):
                assert diag.line >= 1 and diag.column >= 1, diag
