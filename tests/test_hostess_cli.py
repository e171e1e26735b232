"""Spec of ``pykernel hostess ...``: verbs, --json, one-line errors (filters: with the column)."""

from __future__ import annotations

import json
import time
import tomllib
import uuid
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

import pykernel.cli
from control.hostess import Hostess

ROOT = Path(__file__).resolve().parent.parent
UID = str(uuid.uuid4())


@pytest.fixture(autouse=True)
def hostess_verbs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Load the hostess verbs exactly as pyproject.toml declares them (installed or not)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    value = project["project"]["entry-points"]["pykernel.verbs"]["hostess"]
    point = EntryPoint(name="hostess", value=value, group="pykernel.verbs")
    monkeypatch.setattr(pykernel.cli, "entry_points", lambda group: [point])


def run(capsys: pytest.CaptureFixture[str], db: Path, *argv: str) -> tuple[int, str, str]:
    code = pykernel.cli.main(["hostess", *argv[:1], "--db", str(db), *argv[1:]])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def db(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    path = tmp_path / "hostess.sqlite"
    code, _, err = run(
        capsys,
        path,
        "register",
        f"host.lab:cam0:0x1200:lab-a:0:none:{UID}",
        "--terminal",
        "frames:multiplexer:4096",
        "--terminal",
        "ctl:input:64",
        "--tag",
        "gpu",
        "--meta",
        "rack=4",
        "--meta",
        "site=north",
        "--ttl",
        "600",
    )
    assert code == 0, err
    return path


class TestVerbs:
    def test_register_and_list(self, capsys: pytest.CaptureFixture[str], db: Path) -> None:
        """register stores the guest; list shows it, as text and as JSON."""
        code, out, _ = run(capsys, db, "list")
        assert code == 0
        assert out.splitlines() == [
            f"host.lab:cam0:1200:lab-a:0:none:{UID} [gpu] frames(multiplexer) ctl(input)",
            "1 guest(s)",
        ]
        code, out, _ = run(capsys, db, "list", "--json")
        guest = json.loads(out)["guests"][0]
        assert guest["metadata"] == {"rack": 4, "site": "north"}

    def test_query(self, capsys: pytest.CaptureFixture[str], db: Path) -> None:
        """query takes the same filter expression as Python and HTTP."""
        code, out, _ = run(capsys, db, "query", "class&0xff00=0x1200 tag=gpu free", "--json")
        assert code == 0 and json.loads(out)["count"] == 1
        code, out, _ = run(capsys, db, "query", "tag=cpu", "--json")
        assert json.loads(out)["count"] == 0

    def test_allocate_release(self, capsys: pytest.CaptureFixture[str], db: Path) -> None:
        """allocate takes terminals under a heartbeat lease; release frees them."""
        code, out, err = run(capsys, db, "allocate", "free", "-n", "2", "--holder", "ops", "--json")
        assert code == 0, err
        allocation = json.loads(out)
        assert allocation["terminals"] == ["host.lab/cam0.frames", "host.lab/cam0.ctl"]
        assert "expires" in allocation["lease"]
        with Hostess(db) as book:
            assert book.count("used") == 1
        code, out, _ = run(capsys, db, "renew", allocation["id"], "--ttl", "60", "--json")
        assert code == 0 and abs(json.loads(out)["expires"] - (time.time() + 60)) < 30
        code, out, _ = run(capsys, db, "release", allocation["id"])
        assert (code, out) == (0, "freed 2\n")

    def test_leave_connectome_expire(self, capsys: pytest.CaptureFixture[str], db: Path) -> None:
        """leave removes the guest; connectome and expire report."""
        assert run(capsys, db, "connectome")[1] == "connectome None version None\n"
        assert run(capsys, db, "expire")[1] == "expired 0 guest(s), 0 use(s)\n"
        assert run(capsys, db, "leave", UID)[1] == f"left {UID}\n"
        assert json.loads(run(capsys, db, "list", "--json")[1])["count"] == 0


class TestErrors:
    def test_bad_filter_caret_and_one_line(
        self, capsys: pytest.CaptureFixture[str], db: Path
    ) -> None:
        """A bad filter is one error line naming column, token and expression; exit 1."""
        code, out, err = run(capsys, db, "query", "tag=gpu ownr=x")
        assert (code, out) == (1, "")
        assert err.splitlines() == [
            "pykernel: query column 9 ('ownr') in 'tag=gpu ownr=x': unknown field (known: fqdn,"
            " server, servername, owner, uuid, mechanism, auth.mechanism, class, auth, tag,"
            " terminal, terminal.direction)",
        ]

    @pytest.mark.parametrize(
        ("argv", "code", "message"),
        [
            (("register", "a:b"), 1, "give --pid PID or --ttl SECONDS"),
            (("register", "a:b", "--ttl", "5"), 1, "identity 'a:b': 2 fields"),
            (
                ("register", f"h:s:1:o:0:none:{UID}", "--terminal", "x:input", "--ttl", "5"),
                1,
                "--terminal[0]: 'x:input' is not name:direction:message_size",
            ),
            (
                ("register", f"h:s:1:o:0:none:{UID}", "--meta", "novalue", "--ttl", "5"),
                1,
                "--meta[0]",
            ),
            (("register", f"h:s:1:o:0:none:{UID}", "--pid", "999999999"), 1, "no running process"),
            (("allocate", "free", "-n", "9", "--holder", "x"), 1, "asked for; nothing taken"),
            (("allocate", "free", "--holder", "x", "--ttl", "-1"), 1, "lease.ttl"),
            (("allocate", "free"), 2, "--holder"),
            (("release", "nope"), 1, "no allocation nope"),
            (("leave", "nope"), 1, "identity field uuid"),
            (("list", "--limit", "0"), 1, "limit"),
            (("frobnicate",), 2, "invalid choice"),
        ],
    )
    def test_one_line_errors_change_nothing(
        self,
        capsys: pytest.CaptureFixture[str],
        db: Path,
        argv: tuple[str, ...],
        code: int,
        message: str,
    ) -> None:
        """Bad command lines exit non-zero with one line naming the problem; the DB is as it was."""
        with Hostess(db) as book:
            before = [g.to_dict() for g in book.query("")]
        got, out, err = run(capsys, db, *argv)
        assert got == code
        assert out == ""
        assert len(err.strip().splitlines()) == 1 and message in err, err
        with Hostess(db) as book:
            assert [g.to_dict() for g in book.query("")] == before

    def test_default_db_from_environment(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without --db, $PYKERNEL_HOSTESS_DB names the registry."""
        path = tmp_path / "env.sqlite"
        monkeypatch.setenv("PYKERNEL_HOSTESS_DB", str(path))
        assert pykernel.cli.main(["hostess", "list", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["count"] == 0
        assert path.exists()
