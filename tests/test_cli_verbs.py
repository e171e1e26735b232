"""`pykernel VERB` loads only the verb group that has VERB (named in its entry point).

Every group's entry-point name lists its verbs; these tests keep those lists true and show
that a verb's run imports no other group (the import of every group cost each call ~0.5 s).
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from pykernel.cli import Parser, main, verbs_of


def _registered(ep) -> set[str]:  # type: ignore[no-untyped-def]
    parser = Parser(prog="pykernel")
    sub = parser.add_subparsers(dest="verb", parser_class=Parser)
    ep.load()(sub)
    return set(sub.choices)


GROUPS = sorted(entry_points(group="pykernel.verbs"), key=lambda e: e.name)


@pytest.mark.parametrize("ep", GROUPS, ids=[ep.name for ep in GROUPS])
def test_each_group_lists_exactly_the_verbs_it_registers(ep) -> None:  # type: ignore[no-untyped-def]
    """The name is the index `pykernel` routes by: it must not miss or invent a verb."""
    assert set(verbs_of(ep.name)) == _registered(ep)


def test_no_verb_is_listed_by_two_groups() -> None:
    """A verb belongs to one group, so routing by it is unambiguous."""
    listed = [v for ep in GROUPS for v in verbs_of(ep.name)]
    assert len(listed) == len(set(listed))


def _modules_after(argv: list[str]) -> list[str]:
    script = (
        "import json, sys\n"
        "from pykernel.cli import main\n"
        f"code = main({argv!r})\n"
        "sys.stdout.flush()\n"
        "mods = [m for m in sys.modules if m.split('.')[0] in ('control', 'discovery', 'scapy')"
        " or m.startswith('pykernel.bench')]\n"
        "sys.stderr.write(json.dumps([code, sorted(mods)]))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    code, mods = json.loads(run.stderr.splitlines()[-1])
    assert code == 0, run.stderr
    return mods


def test_a_pipes_verb_imports_no_other_group() -> None:
    """`pykernel pipes list` loads neither control, discovery nor the bench harness."""
    assert _modules_after(["pipes", "list", "--json"]) == []


def test_a_control_verb_imports_no_discovery() -> None:
    """`pykernel hostess list` loads Hostess, not discovery, the kernel or the surface."""
    mods = _modules_after(["hostess", "list", "--json", "--db", ":memory:"])
    assert "control.hostess.registry" in mods
    assert not [m for m in mods if m.startswith(("discovery", "control.kernel", "control.surface"))]


def test_unknown_verbs_are_named_among_all(capsys: pytest.CaptureFixture[str]) -> None:
    """No group lists it: every group loads, and the error names the known verbs."""
    assert main(["nosuchverb"]) == 2
    err = capsys.readouterr().err
    assert "nosuchverb" in err and "lint" in err and "neighbors" in err and "pipes" in err
