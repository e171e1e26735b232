"""Spec of the connectome exchange: Hostess and the control surface agree at all times."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from control.hostess import (
    ConflictError,
    Connection,
    Hostess,
    HostessError,
    InputError,
    Lease,
    NotFoundError,
    TerminalSpec,
)
from control.hostess.api import PREFIX, mount

ROOT = Path(__file__).resolve().parent.parent
LEASE = Lease.heartbeat(3600)


def dump(book: Hostess) -> list[str]:
    with sqlite3.connect(book.path) as db:
        return list(db.iterdump())


@pytest.fixture
def book(tmp_path: Path) -> Iterator[Hostess]:
    with Hostess(tmp_path / "hostess.sqlite") as hostess:
        for server, terminals in {
            "cam": [("frames", "multiplexer"), ("ctl", "input")],
            "view1": [("frames", "input")],
            "view2": [("frames", "input")],
            "mix": [("inp", "combiner"), ("out", "output")],
        }.items():
            specs = [TerminalSpec(name, direction, 64) for name, direction in terminals]
            hostess.register(f"host.lab:{server}:10:lab:0:none:{uuid.uuid4()}", specs, lease=LEASE)
        yield hostess


def uses(book: Hostess, server: str, terminal: str) -> list[str | None]:
    guest = book.query(f"server={server}")[0]
    return [u.connection for t in guest.terminals if t.name == terminal for u in t.uses]


class TestRecord:
    def test_marks_and_reads_back(self, book: Hostess) -> None:
        """Recorded connections mark their terminals and read back the same."""
        conns = [("c1", "cam.frames", "view1.frames"), ("c2", "cam.frames", "view2.frames")]
        held = book.record_connectome("k", 1, conns)
        assert held.id == "k" and held.version == 1
        assert held.connections == tuple(Connection(*c) for c in conns)
        assert uses(book, "cam", "frames") == ["c1", "c2"]  # a multiplexer fans out
        assert uses(book, "view1", "frames") == ["c1"]
        assert book.count("used") == 3
        assert book.connectome() == held

    def test_frees_what_is_no_longer_listed(self, book: Hostess) -> None:
        """A new version frees the terminals of dropped connections and keeps the rest."""
        book.record_connectome(
            "k", 1, [("c1", "cam.frames", "view1.frames"), ("c2", "cam.frames", "view2.frames")]
        )
        held = book.record_connectome(
            "k", 2, [{"id": "c2", "src": "cam.frames", "dst": "view2.frames"}]
        )
        assert [c.id for c in held.connections] == ["c2"]
        assert uses(book, "view1", "frames") == []
        assert uses(book, "cam", "frames") == ["c2"]
        assert book.record_connectome("k", 3, []).connections == ()
        assert book.count("used") == 0

    def test_fan_in(self, book: Hostess) -> None:
        """A combiner takes many connections; an output one."""
        book.register(
            f"host.lab:gen:10:lab:0:none:{uuid.uuid4()}",
            [TerminalSpec("out", "output", 64)],
            lease=LEASE,
        )
        book.record_connectome(
            "k", 1, [("a", "gen.out", "mix.inp"), ("b", "mix.out", "view1.frames")]
        )
        with pytest.raises(ConflictError, match=r"gen\.out \(output\) is already used"):
            book.record_connectome(
                "k", 2, [("a", "gen.out", "mix.inp"), ("b", "gen.out", "view1.frames")]
            )

    def test_binds_allocations(self, book: Hostess) -> None:
        """An allocation made for a connection (or for none yet) is bound to it, then freed."""
        named = book.allocate("server=view1", 1, holder="alice", connection="c1", lease=LEASE)
        blank = book.allocate("server=view2", 1, holder="bob", lease=LEASE)
        book.record_connectome(
            "k", 1, [("c1", "cam.frames", "view1.frames"), ("c2", "cam.frames", "view2.frames")]
        )
        bound = {a.id: a.connection for a in book.allocations()}
        assert bound == {named.id: "c1", blank.id: "c2"}
        assert book.query("server=view2")[0].terminals[0].uses[0].holder == "bob"
        book.record_connectome("k", 2, [])
        assert book.allocations() == []
        assert book.count("used") == 0  # the per-terminal use counts went back to zero

    def test_same_version_is_idempotent(self, book: Hostess) -> None:
        """Recording the same version with the same connections changes nothing."""
        conns = [("c1", "cam.frames", "view1.frames")]
        book.record_connectome("k", 4, conns)
        before = dump(book)
        book.record_connectome("k", 4, conns)
        assert dump(book) == before
        assert book.connectome().connections == (Connection(*conns[0]),)

    def test_same_version_refresh(self, book: Hostess) -> None:
        """The same version with other connections is a refresh and replaces them."""
        book.record_connectome("k", 4, [("c1", "cam.frames", "view1.frames")])
        held = book.record_connectome("k", 4, [("c2", "cam.frames", "view2.frames")])
        assert [c.id for c in held.connections] == ["c2"]
        assert uses(book, "view1", "frames") == []

    def test_new_connectome_id_replaces(self, book: Hostess) -> None:
        """A connectome with another ID (a new plan) replaces the old one whole."""
        book.record_connectome("k", 9, [("c1", "cam.frames", "view1.frames")])
        held = book.record_connectome("k2", 1, [("c2", "cam.frames", "view2.frames")])
        assert (held.id, held.version, [c.id for c in held.connections]) == ("k2", 1, ["c2"])
        assert uses(book, "view1", "frames") == []

    def test_qualified_endpoints(self, book: Hostess) -> None:
        """A server name on two hosts must be written fqdn/server.terminal."""
        book.register(
            f"other.lab:view1:10:lab:0:none:{uuid.uuid4()}",
            [TerminalSpec("frames", "input", 64)],
            lease=LEASE,
        )
        with pytest.raises(ConflictError, match="ambiguous"):
            book.record_connectome("k", 1, [("c1", "cam.frames", "view1.frames")])
        book.record_connectome("k", 1, [("c1", "cam.frames", "other.lab/view1.frames")])
        assert uses(book, "view1 fqdn=other.lab", "frames") == ["c1"]

    def test_kernel_death_frees(self, book: Hostess) -> None:
        """Uses recorded for a kernel that died are expired with it."""
        script = (
            "import sys; from control.hostess import Hostess\n"
            "conns = [('c1', 'cam.frames', 'view1.frames')]\n"
            "Hostess(sys.argv[1]).record_connectome('k', 1, conns)\n"
        )
        subprocess.run([sys.executable, "-c", script, str(book.path)], cwd=ROOT, check=True)
        assert len(book.connectome().connections) == 1
        assert book.expire() == {"guests": 0, "uses": 2}
        assert book.connectome().connections == ()


REFUSALS = [
    ("k", 1, [("c1", "view1.frames", "cam.ctl")], InputError, "is input; a src must be"),
    ("k", 1, [("c1", "cam.frames", "mix.out")], InputError, "is output; a dst must be"),
    ("k", 1, [("c1", "cam.frames", "nobody.frames")], NotFoundError, "no registered terminal"),
    ("k", 1, [("c1", "cam.frames", "view1.nothing")], NotFoundError, "view1.nothing"),
    (
        "k",
        1,
        [("c1", "cam.frames", "view1.frames"), ("c2", "cam.frames", "view1.frames")],
        ConflictError,
        "already used by connection 'c1'",
    ),
    (
        "k",
        1,
        [("c1", "cam.frames", "view1.frames"), ("c1", "cam.frames", "view2.frames")],
        InputError,
        "listed twice",
    ),
    ("k", 1, [("c1", "cam frames", "view1.frames")], InputError, r"connections\[0\]\.src"),
    ("k", 1, [("c1", "cam.frames")], InputError, r"connections\[0\]"),
    ("k", 1, "c1", InputError, "must be a list"),
    ("k k", 1, [], InputError, "connectome.id"),
    ("k", -1, [], InputError, "connectome.version"),
    ("k", "2", [], InputError, "connectome.version"),
    ("k", 3, [], InputError, "is not a Lease"),
    ("k", 1, [], ConflictError, "version 1 is older than the recorded 2"),
    (
        "k",
        3,
        [("c9", "cam.frames", "view2.frames")],
        ConflictError,
        "in use by connection 'other' of 'carol'",
    ),
]


class TestRefusals:
    @pytest.mark.parametrize(("cid", "version", "conns", "error", "match"), REFUSALS)
    def test_refused_and_nothing_changes(
        self,
        book: Hostess,
        cid: str,
        version: int,
        conns: list,
        error: type[HostessError],
        match: str,
    ) -> None:
        """Bad connectomes are typed errors and leave Hostess exactly as it was."""
        book.record_connectome("k", 2, [("c0", "mix.out", "view1.frames")])
        book.allocate("server=view2", 1, holder="carol", connection="other", lease=LEASE)
        before = dump(book)
        lease = "forever" if "Lease" in match else None
        with pytest.raises(error, match=match):
            book.record_connectome(cid, version, conns, lease=lease)  # type: ignore[arg-type]
        assert dump(book) == before


# -- against the real control surface -------------------------------------------------


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


class TestAgreesWithSurface:
    def test_connect_disconnect_at_run_time(self, tmp_path: Path) -> None:
        """After every run-time change, Hostess's view over HTTP equals the surface's."""
        from control.plan import build_plan
        from control.state import SystemState
        from control.surface import Surface

        plan = build_plan(ROOT / "examples" / "demo.yaml")
        state = SystemState.from_plan(plan)
        with Hostess(tmp_path / "hostess.sqlite") as book:
            for server in plan.servers:  # each server registers at its start
                specs = [
                    TerminalSpec(t.name, t.direction, t.message_size)
                    for t in server.manifest.terminals
                ]
                book.register(f"host.lab:{server.name}:10:demo:0:none:{uuid.uuid4()}", specs)

            def exchange() -> None:  # what the kernel does after each change
                view = state.connectome_json()
                book.record_connectome(
                    view["id"],
                    view["version"],
                    [(c["id"], c["source"], c["target"]) for c in view["connections"]],
                )

            with Surface(state, mounts={f"{PREFIX}/": mount(book)}) as surface:

                def agree() -> None:
                    theirs = get(f"{surface.url}/api/connectome")
                    ours = get(f"{surface.url}{PREFIX}/connectome")["connectome"]
                    assert (ours["id"], ours["version"]) == (theirs["id"], theirs["version"])
                    assert ours["connections"] == [
                        {"id": c["id"], "src": c["source"], "dst": c["target"]}
                        for c in theirs["connections"]
                    ]
                    in_use = {
                        f"{g['servername']}.{t['name']}"
                        for g in get(f"{surface.url}{PREFIX}/guests?q=used")["guests"]
                        for t in g["terminals"]
                        if t["in_use"]
                    }
                    assert in_use == {
                        e for c in theirs["connections"] for e in (c["source"], c["target"])
                    }

                exchange()
                agree()
                dropped = plan.connections[0]
                pipe = next(p for p in plan.pipes if p.name == dropped.pipe)
                state.remove_connection(dropped.id, "operator")
                exchange()
                agree()
                assert f"{dropped.target}" not in {c.dst for c in book.connectome().connections}
                state.add_connection(dropped, pipe, "operator")
                exchange()
                agree()
                for conn in plan.connections:
                    state.remove_connection(conn.id, "teardown")
                exchange()
                agree()
                assert book.count("used") == 0
