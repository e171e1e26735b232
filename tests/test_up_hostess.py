"""`pykernel up` with Hostess, rewired at run time through HTTP and the `pykernel` verbs.

One `pykernel up` runs the rewiring test system (tests/test_rewire.py) for the module; the
tests run in order: Hostess sees every server, a new consumer is connected over HTTP and
checks every message it gets, the verbs connect and disconnect, and at the end SIGINT
leaves no guest, no pipe and no process behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_rewire import report, shm_names, wait_for, write_system
from test_surface_kit import call


def pykernel(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the `pykernel` command; return what it did."""
    return subprocess.run([sys.executable, "-m", "pykernel", *args], capture_output=True,
                          text=True, timeout=60, check=False)


class Up:
    """A running `pykernel up` with its run directory, surface URL, token and Hostess file."""

    def __init__(self, proc: subprocess.Popen[str], run: Path, db: Path, system: str) -> None:
        self.proc, self.run, self.db, self.system = proc, run, db, system
        self.url = json.loads((run / "surface.json").read_text())["url"]
        self.token = (run / "surface.token").read_text().strip()

    def get(self, path: str) -> Any:
        """GET a surface route; return its JSON."""
        status, body = call("GET", self.url + path)
        assert status == 200, body
        return body

    def guests(self) -> dict[str, dict[str, Any]]:
        """`pykernel hostess list --json`: the registered guests by server name."""
        done = pykernel("hostess", "list", "--db", str(self.db), "--json")
        assert done.returncode == 0, done.stderr
        return {g["servername"]: g for g in json.loads(done.stdout)["guests"]}

    def pid(self, server: str) -> int | None:
        """The server's pid as the surface reports it."""
        return self.get(f"/api/servers/{server}")["pid"]

    def agree(self) -> bool:
        """Whether the surface's connectome and Hostess's are the same (ID, version, edges)."""
        mine = self.get("/api/connectome")
        held = self.get("/api/hostess/connectome")["connectome"]
        edges = {(c["id"], c["source"], c["target"]) for c in mine["connections"]}
        recorded = {(c["id"], c["src"].rpartition("/")[2], c["dst"].rpartition("/")[2])
                    for c in held["connections"]}  # fqdn/ only when a name is not unique
        return (held["id"], held["version"]) == (mine["id"], mine["version"]) and \
            edges == recorded


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    """`pykernel up --hostess-db` on the rewiring system until the module ends."""
    tmp = tmp_path_factory.mktemp("uphostess")
    system = f"uh{uuid.uuid4().hex[:10]}"
    wiring = write_system(tmp, system)
    run, db = tmp / "run", tmp / "hostess.sqlite"
    proc = subprocess.Popen([sys.executable, "-m", "pykernel", "up", str(wiring), "--run-dir",
                             str(run), "--hostess-db", str(db), "--grace", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_booted(proc, run)
        yield Up(proc, run, db, system)
    finally:
        interrupt(proc)
        for leftover in shm_names(system):
            os.unlink(f"/dev/shm/{leftover}")


def wait_booted(proc: subprocess.Popen[str], run: Path) -> None:
    """Wait until `pykernel up` says its kernel is running (through its surface)."""
    def booted() -> bool:
        assert proc.poll() is None, proc.communicate()[1]
        if not (run / "surface.json").exists():
            return False
        status = pykernel("status", "--run-dir", str(run), "--json")
        return status.returncode == 0 and \
            json.loads(status.stdout)["system"]["state"] == "running"

    wait_for(booted, timeout=30)


def interrupt(proc: subprocess.Popen[str]) -> int:
    """SIGINT a `pykernel up` still running (SIGKILL if it hangs); return its exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


class TestHostessInUp:
    """Hostess runs inside `pykernel up`: the servers are its guests."""

    def test_every_server_is_a_guest(self, up: Up) -> None:
        """`pykernel hostess list` shows each server with its pid and the system's name."""
        guests = wait_for(lambda: (g := up.guests()) and len(g) == 6 and g)
        assert set(guests) == {"ticker", "gen", "l1", "l2", "l3", "picky"}
        assert guests["l1"]["metadata"] == {"system": up.system, "pid": up.pid("l1")}

    def test_servers_get_the_registry_path(self, up: Up) -> None:
        """$PYKERNEL_HOSTESS_DB names up's registry (picky is exec'd: /proc shows its env)."""
        environ = Path(f"/proc/{up.pid('picky')}/environ").read_bytes().split(b"\0")
        assert f"PYKERNEL_HOSTESS_DB={up.db.resolve()}".encode() in environ

    def test_routes_are_mounted_and_agree(self, up: Up) -> None:
        """/api/hostess/ answers on the surface; its connectome is the surface's."""
        assert len(up.get("/api/hostess/guests")["guests"]) == 6
        assert "/api/hostess/connectome" in up.get("/openapi.json")["paths"]
        wait_for(up.agree)


class TestRewireThroughTheSurface:
    """Connect and disconnect at run time; Hostess and the surface agree after each step."""

    def test_connect_over_http_delivers_every_message(self, up: Up) -> None:
        """POST ticker.out -> l2.inp: 201, l2 restarts and checks a gapless stream."""
        version = up.get("/api/connectome")["version"]
        ticker, l1 = up.pid("ticker"), up.pid("l1")
        status, body = call("POST", up.url + "/api/connections",
                            {"source": "ticker.out", "target": "l2.inp"}, up.token)
        assert status == 201, body
        assert body["state"] in ("open", "flowing")
        assert up.pid("ticker") == ticker and up.pid("l1") == l1  # the pipe had room
        got = wait_for(lambda: (r := report(up.run, "l2", up.pid("l2"))) and r["count"] >= 50
                       and r)
        assert got["bad"] == 0 and got["last"] - got["first"] + 1 == got["count"]
        assert up.get("/api/connectome")["version"] > version
        wait_for(up.agree)
        uses = {t["name"]: [u["connection"] for u in t["uses"]]
                for t in up.guests()["l2"]["terminals"]}
        assert uses == {"inp": [body["id"]]}

    def test_disconnect_verb(self, up: Up) -> None:
        """`pykernel disconnect ID`: the connection is closed, l2's terminal is free."""
        conn = next(c for c in up.get("/api/connections") if c["target"] == "l2.inp")
        done = pykernel("disconnect", conn["id"], "--run-dir", str(up.run))
        assert done.returncode == 0, done.stderr
        assert all(c["id"] != conn["id"] for c in up.get("/api/connections"))
        events = up.get("/api/events")
        assert any(e["subject"] == conn["id"] and e["to"] == "closed" for e in events)
        wait_for(up.agree)
        wait_for(lambda: up.guests()["l2"]["terminals"][0]["in_use"] is False)

    def test_connect_verb_makes_a_pipe_and_disconnect_removes_it(self, up: Up) -> None:
        """`pykernel connect gen.out l3.inp` adds pipe <system>.gen.out; disconnect drops it."""
        done = pykernel("connect", "gen.out", "l3.inp", "--run-dir", str(up.run), "--json")
        assert done.returncode == 0, done.stderr
        conn = json.loads(done.stdout)
        assert f"pykernel.{up.system}.gen.out" in shm_names(up.system)
        wait_for(lambda: (r := report(up.run, "l3", up.pid("l3"))) and r["count"] >= 25)
        wait_for(up.agree)
        assert pykernel("disconnect", conn["id"], "--run-dir", str(up.run)).returncode == 0
        assert shm_names(up.system) == [f"pykernel.{up.system}.ticker.out"]
        wait_for(up.agree)

    def test_refused_connect_changes_nothing(self, up: Up) -> None:
        """A server that fails on its new terminals (exit 78): 409, the old wiring runs."""
        def shape() -> tuple[Any, ...]:
            view = up.get("/api/connectome")
            return view["id"], view["version"], [c["id"] for c in view["connections"]]

        before = shape()
        status, body = call("POST", up.url + "/api/connections",
                            {"source": "ticker.out", "target": "picky.inp"}, up.token)
        assert status == 409 and "exit code 78" in body["error"]["message"]
        assert shape() == before
        failed = [e for e in up.get("/api/events?limit=1000")
                  if e["subject"] == "picky" and e["to"] == "failed"]
        assert failed and "EX_CONFIG: configuration error, not restarted" in failed[-1]["cause"]
        wait_for(lambda: up.get("/api/servers/picky")["state"] == "running")
        wait_for(up.agree)


class TestShutdown:
    """SIGINT: the servers leave Hostess and nothing is left behind (runs last)."""

    def test_everything_leaves(self, up: Up) -> None:
        """Exit 0, no guests, no pipes, no surface files; the registry stays."""
        up.proc.send_signal(signal.SIGINT)
        assert up.proc.wait(timeout=30) == 0
        assert up.guests() == {}
        assert shm_names(up.system) == []
        assert not (up.run / "surface.json").exists()
        assert pykernel("hostess", "connectome", "--db", str(up.db), "--json").returncode == 0


def test_default_registry_is_in_the_run_dir(tmp_path: Path) -> None:
    """Without --hostess-db the registry is RUN_DIR/hostess.sqlite; --no-hostess has none."""
    env = {k: v for k, v in os.environ.items() if k != "PYKERNEL_HOSTESS_DB"}
    system = f"uh{uuid.uuid4().hex[:10]}"
    wiring = write_system(tmp_path, system)
    try:
        for flags, expected in (([], True), (["--no-hostess"], False)):
            run = tmp_path / f"run{len(flags)}"
            proc = subprocess.Popen([sys.executable, "-m", "pykernel", "up", str(wiring),
                                     "--run-dir", str(run), "--no-surface", "--json-status",
                                     *flags],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=env)
            try:
                assert proc.stdout is not None
                assert any(json.loads(line)["event"] == "up" for line in proc.stdout)
                assert (run / "hostess.sqlite").exists() is expected
            finally:
                assert interrupt(proc) == 0, proc.communicate()[1]
    finally:
        for leftover in shm_names(system):
            os.unlink(f"/dev/shm/{leftover}")


BOOK_SERVERS = '''
import json, os
from control.manifest import manifest, terminal


@manifest(servername="book", class_hex="0x40", owner="test",
          terminals=[terminal("inp", "input", message_size=16, required=False)])
def book(ctx):
    """Open the registry `pykernel up` runs (forked from the kernel), read and write it."""
    from control.hostess import Hostess
    try:
        # Not closed: Hostess.close() runs PRAGMA optimize, which can meet "database is
        # locked" while other processes write (a separate issue); the exit closes it.
        hostess = Hostess(os.environ["PYKERNEL_HOSTESS_DB"], timeout=5)
        for _ in range(20):
            hostess.expire()
            seen = hostess.count("")
        result = {"ok": True, "seen": seen}
    except Exception as exc:
        result = {"ok": False, "error": str(exc)}
    path = os.path.join(ctx.run_dir, ctx.server + ".json")
    with open(path + ".tmp", "w") as f:
        json.dump(result, f)
    os.replace(path + ".tmp", path)
    ctx.stopping.wait()
'''


def test_forked_servers_can_use_the_registry(tmp_path: Path) -> None:
    """Servers forked while the kernel uses Hostess open the same registry without error."""
    system = f"uh{uuid.uuid4().hex[:10]}"
    (tmp_path / "uh_books.py").write_text(BOOK_SERVERS)
    names = [f"book{i}" for i in range(6)]
    servers = "\n".join(f"  {n}: {{python: 'uh_books:book'}}" for n in names)
    wiring = tmp_path / "books.yaml"
    wiring.write_text(f"system: {system}\npython_path: ['.']\nservers:\n{servers}\n")
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "pykernel", "up", str(wiring), "--run-dir",
                             str(run)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        wait_booted(proc, run)
        wait_for(lambda: all((run / f"{n}.json").exists() for n in names), timeout=30)
        results = {n: json.loads((run / f"{n}.json").read_text()) for n in names}
        assert [r for r in results.values() if not r["ok"]] == []
    finally:
        assert interrupt(proc) == 0, proc.communicate()[1]


def test_unusable_registry_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    """--hostess-db naming a directory: one line naming it, non-zero exit, no pipes left."""
    system = f"uh{uuid.uuid4().hex[:10]}"
    wiring = write_system(tmp_path, system)
    (tmp_path / "adir").mkdir()
    done = pykernel("up", str(wiring), "--run-dir", str(tmp_path / "run"), "--no-surface",
                    "--hostess-db", str(tmp_path / "adir"))
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1 and f"cannot open registry {tmp_path / 'adir'}" in \
        done.stderr
    assert shm_names(system) == []
    again = pykernel("up", str(wiring), "--run-dir", str(tmp_path / "run"), "--no-surface",
                     "--hostess-db", str(tmp_path / "adir"))
    assert "already up" not in again.stderr  # the lock was released
