"""Conventions every `pykernel` verb keeps, checked over the whole assembled command.

Verbs are enumerated from :func:`pykernel.cli.build_parser` (sub-verbs included), so a verb
added later is checked without editing this file: data verbs take ``--json``; ``--help``
works; bad arguments give one line on stderr starting ``pykernel:``, a non-zero exit and
no traceback. Most run in-process through :func:`pykernel.cli.main` (faithful: ``main`` is
the console script); a sample runs as ``python -m pykernel`` to prove the real process.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pykernel.cli import build_parser, main

ROOT = Path(__file__).resolve().parent.parent

# Verbs that print no data, so have no --json. Each says why.
NO_DATA: dict[tuple[str, ...], str] = {
    ("discovery", "run"): "a service, not a query: it runs discovery in the foreground until "
                          "signalled (it prints one JSON ready line for its launcher); what it "
                          "finds is read with `neighbors`/`candidates --json`",
}

NONSENSE = "nonsense-\u03be"


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> Iterator[
        tuple[tuple[str, ...], argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from _walk(sub, (*path, name))


def _is_group(parser: argparse.ArgumentParser) -> bool:
    return any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)


ALL = dict(_walk(build_parser(), ()))
LEAVES = {path: p for path, p in ALL.items() if not _is_group(p)}
GROUPS = {path: p for path, p in ALL.items() if _is_group(p)}


def _ids(paths: object) -> list[str]:
    return [" ".join(p) for p in paths]  # type: ignore[attr-defined]


def _typed_options() -> list[tuple[tuple[str, ...], str]]:
    """Every option that converts or restricts its value (int, float, choices, custom)."""
    found = []
    for path, parser in LEAVES.items():
        for action in parser._actions:
            if not action.option_strings or action.nargs == 0:
                continue
            converts = action.type not in (None, str, Path) or action.choices is not None
            if converts:
                found.append((path, action.option_strings[-1]))
    return found


TYPED = _typed_options()


def _one_line_error(err: str) -> str:
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pykernel: "), err
    return lines[0]


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's --help exits; errors must not
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port bound but not listening: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


class TestTheVerbList:
    """The enumeration sees every verb group the entry points declare."""

    def test_known_verbs_are_present(self) -> None:
        """Verbs of each entry-point group appear, sub-verbs included."""
        for path in [("pipes", "list"), ("bench",), ("lint",), ("up",), ("status",),
                     ("hostess", "query"), ("neighbors",), ("lldp", "send")]:
            assert path in LEAVES, path
        assert {("pipes",), ("hostess",), ("lldp",), ("discovery",)} <= set(GROUPS)

    def test_every_leaf_has_a_function(self) -> None:
        """Each runnable verb sets `func`, so parsing never leaves nothing to run."""
        assert [p for p, parser in LEAVES.items() if parser.get_default("func") is None] == []


class TestJsonFlag:
    """Every verb that prints data takes --json (the standard add_json_flag)."""

    @pytest.mark.parametrize("path", sorted(LEAVES), ids=_ids(sorted(LEAVES)))
    def test_data_verb_takes_json(self, path: tuple[str, ...]) -> None:
        """A data verb has a store_true --json; a listed no-data verb has none."""
        flags = {o: a for a in LEAVES[path]._actions for o in a.option_strings}
        if path in NO_DATA:
            assert "--json" not in flags, f"{path} takes --json now: drop it from NO_DATA"
        else:
            assert "--json" in flags
            assert isinstance(flags["--json"], argparse._StoreTrueAction)

    def test_allow_list_names_real_verbs(self) -> None:
        """Every NO_DATA entry is a verb that exists."""
        assert set(NO_DATA) <= set(LEAVES)

    @pytest.mark.parametrize("argv", [
        ["pipes", "list", "--json"],
        ["discovery", "servers", "--json"],
        ["lint", "examples/demo.yaml", "--json"],
        ["plan", "examples/demo.yaml", "--json"],
    ], ids=" ".join)
    def test_json_output_parses(self, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> None:
        """What --json prints is one JSON document."""
        monkeypatch.chdir(ROOT)
        code, out, err = _run(capsys, argv)
        assert code == 0, err
        json.loads(out)

    @pytest.mark.parametrize("verb", [["neighbors"], ["candidates"], ["hostess", "list"],
                                      ["hostess", "connectome"]], ids=" ".join)
    def test_json_output_parses_with_a_run_dir(self, capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path, verb: list[str]) -> None:
        """Verbs reading a run directory or registry print JSON there too."""
        flag = ["--db", str(tmp_path / "h.sqlite")] if verb[0] == "hostess" \
            else ["--run-dir", str(tmp_path)]
        code, out, err = _run(capsys, [*verb, *flag, "--json"])
        assert code == 0, err
        assert isinstance(json.loads(out), dict)


class TestHelp:
    """--help works for the command, every group and every verb."""

    @pytest.mark.parametrize("path", [(), *sorted(ALL)], ids=["pykernel", *_ids(sorted(ALL))])
    def test_help(self, capsys: pytest.CaptureFixture[str], path: tuple[str, ...]) -> None:
        """`--help` exits 0 and prints the verb's usage."""
        code, out, err = _run(capsys, [*path, "--help"])
        assert code == 0, err
        assert out.startswith(f"usage: {' '.join(('pykernel', *path))}")


class TestBadArguments:
    """Bad arguments: one line on stderr, `pykernel:` first, exit 2, no traceback."""

    @pytest.mark.parametrize("path", sorted(LEAVES), ids=_ids(sorted(LEAVES)))
    def test_unknown_option(self, capsys: pytest.CaptureFixture[str],
                            path: tuple[str, ...]) -> None:
        """An option no verb has is a usage error (or a missing argument is named first)."""
        code, out, err = _run(capsys, [*path, "--no-such-option-xyz"])
        assert code == 2
        assert out == ""
        line = _one_line_error(err)
        assert "--no-such-option-xyz" in line or "required" in line

    @pytest.mark.parametrize("path", sorted(GROUPS), ids=_ids(sorted(GROUPS)))
    def test_group_without_its_sub_verb(self, capsys: pytest.CaptureFixture[str],
                                        path: tuple[str, ...]) -> None:
        """A verb group alone names what is missing."""
        code, _, err = _run(capsys, list(path))
        assert code == 2
        assert "required" in _one_line_error(err)

    @pytest.mark.parametrize("path", sorted(GROUPS), ids=_ids(sorted(GROUPS)))
    def test_group_with_an_unknown_sub_verb(self, capsys: pytest.CaptureFixture[str],
                                            path: tuple[str, ...]) -> None:
        """An unknown sub-verb is refused by name."""
        code, _, err = _run(capsys, [*path, NONSENSE])
        assert code == 2
        assert NONSENSE in _one_line_error(err)

    @pytest.mark.parametrize(("path", "option"), TYPED,
                             ids=[f"{' '.join(p)} {o}" for p, o in TYPED])
    def test_unconvertible_value(self, capsys: pytest.CaptureFixture[str],
                                 path: tuple[str, ...], option: str) -> None:
        """A value that is not a number/choice of the option is refused, naming the option."""
        code, out, err = _run(capsys, [*path, option, NONSENSE])
        assert code == 2
        assert out == ""
        assert option in _one_line_error(err)

    def test_no_verb_and_an_unknown_verb(self, capsys: pytest.CaptureFixture[str]) -> None:
        """`pykernel` alone, or with an unknown verb, is a one-line usage error."""
        for argv in ([], [NONSENSE]):
            code, _, err = _run(capsys, argv)
            assert code == 2
            _one_line_error(err)


class TestUnreachableKernel:
    """Verbs that talk to a running kernel say in one line when there is none."""

    @pytest.mark.parametrize("argv", [["status"], ["events"], ["graph"], ["connect", "a.o", "b.i"],
                                      ["disconnect", "c0001"]], ids=" ".join)
    def test_refused_url(self, capsys: pytest.CaptureFixture[str], closed_port: int,
                         argv: list[str]) -> None:
        """A URL where nothing listens gives a typed one-line error, exit 1."""
        code, out, err = _run(capsys, [*argv, "--url", f"http://127.0.0.1:{closed_port}"])
        assert code == 1
        assert out == ""
        assert f"127.0.0.1:{closed_port}" in _one_line_error(err)

    def test_empty_run_dir(self, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
        """A run directory without a kernel is named in the error."""
        code, _, err = _run(capsys, ["status", "--run-dir", str(tmp_path)])
        assert code == 1
        assert str(tmp_path) in _one_line_error(err)

    def test_malformed_url_is_a_typed_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A --url that is not a URL is bad input (exit 1), not an internal error (70)."""
        code, _, err = _run(capsys, ["status", "--url", "not-a-url"])
        _one_line_error(err)
        assert code == 1, err


class TestBadFiles:
    """A file that is not text/YAML is refused in one line, not as an internal error."""

    @pytest.mark.parametrize("verb", ["plan", "up"])
    def test_binary_wiring_file(self, capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                verb: str) -> None:
        """plan/up of a binary file: one `pykernel:` line naming the file, exit 1."""
        bad = tmp_path / "bin.yaml"
        bad.write_bytes(b"\x7fELF\x00\xd0\xd0")
        code, _, err = _run(capsys, [verb, str(bad), *(["--no-surface"] if verb == "up" else [])])
        assert code == 1
        assert str(bad) in _one_line_error(err)

    def test_binary_discovery_config(self, capsys: pytest.CaptureFixture[str],
                                     tmp_path: Path) -> None:
        """`discovery run --config` of a non-UTF-8 file is a typed error naming the file."""
        bad = tmp_path / "bin.yaml"
        bad.write_bytes(b"a: \xd0\xd0\n")
        code, _, err = _run(capsys, ["discovery", "run", "--config", str(bad)])
        assert str(bad) in _one_line_error(err)
        assert code == 1


class TestOutOfRangeValues:
    """A number argparse accepts but the verb cannot use is a typed error, not exit 70."""

    def test_huge_hostess_limit(self, capsys: pytest.CaptureFixture[str],
                                tmp_path: Path) -> None:
        """`hostess list --limit 2**64` names the limit, exit 1."""
        code, _, err = _run(capsys, ["hostess", "list", "--db", str(tmp_path / "h.sqlite"),
                                     "--limit", str(2**64)])
        assert "limit" in _one_line_error(err)
        assert code == 1


# A small sample (each process loads every verb group: ~1 s of CPU), run as the real process.
SAMPLE = [[], ["pipes", "show"], ["hostess", "query", "--limit", NONSENSE],
          ["up", "--no-such-option-xyz", "x.yaml"]]


class TestRealProcess:
    """`python -m pykernel` keeps the same conventions as a process."""

    def test_sample_of_bad_invocations(self, tmp_path: Path) -> None:
        """Each sample exits 2 with one `pykernel:` line and no traceback, within seconds."""
        env = {**os.environ, "PYKERNEL_RUN_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
        procs = [subprocess.Popen([sys.executable, "-m", "pykernel", *argv], cwd=tmp_path,
                                  env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for argv in SAMPLE]
        try:
            for argv, proc in zip(SAMPLE, procs, strict=True):
                out, err = proc.communicate(timeout=30)
                assert proc.returncode == 2, (argv, err)
                assert out == "", argv
                _one_line_error(err)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
