"""Spec of the kernel hooks: servers register at start, leave at stop, connectome agrees."""

from __future__ import annotations

import os
import signal
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from control.hostess import Hostess, IdentityError
from control.hostess.hooks import KernelHooks, server_identity
from control.kernel import Kernel
from control.plan import build_plan
from control.state import SystemState

SERVERS = """
from control.manifest import manifest, terminal

@manifest(servername="src", class_hex="0x1200", owner="test",
          terminals=[terminal("out", "multiplexer", message_size=64)])
def src(ctx):
    while not ctx.stopping.wait(0.05):
        pass

@manifest(servername="sink", class_hex="0x1300", owner="test",
          terminals=[terminal("inp", "input", message_size=64)])
def sink(ctx):
    while not ctx.stopping.wait(0.05):
        pass
"""


def wiring(tmp_path: Path, system: str) -> Path:
    (tmp_path / "hk_servers.py").write_text(SERVERS)
    path = tmp_path / "wiring.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        system: {system}
        python_path: ["."]
        defaults: {{restart: never}}
        servers:
          a: {{python: "hk_servers:sink"}}
          b: {{python: "hk_servers:sink"}}
          s: {{python: "hk_servers:src", depends_on: [a, b]}}
        connections:
          - s.out -> a.inp
          - s.out -> b.inp
        """)
    )
    return path


@pytest.fixture
def system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A system name no other test uses; its pipes are removed even if the test fails."""
    monkeypatch.syspath_prepend(str(tmp_path))  # lint imports the servers' manifests
    name = f"hk{uuid.uuid4().hex[:10]}"
    yield name
    for leftover in os.listdir("/dev/shm"):
        if leftover.startswith(f"pykernel.{name}."):
            os.unlink(f"/dev/shm/{leftover}")


def eventually(check: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class TestKernelHooks:
    def test_register_exchange_leave(self, tmp_path: Path, system: str) -> None:
        """A real kernel's servers come and go in Hostess; both connectome views agree."""
        plan = build_plan(wiring(tmp_path, system))
        state = SystemState.from_plan(plan)
        book = Hostess(tmp_path / "hostess.sqlite")
        hooks = KernelHooks(book, plan, state=state, fqdn="host.test", tags=("demo",))
        kernel = Kernel(plan, run_dir=tmp_path / "run", builtins=(), fork_python=True)
        kernel.subscribe(hooks)
        hooks.start()
        try:
            status = kernel.start()
            pids = {s.name: s.pid for s in status.services}

            def registered() -> None:
                guests = {g.identity.servername: g for g in book.query("fqdn=host.test tag=demo")}
                assert {name: g.lease.pid for name, g in guests.items()} == pids

            def agree() -> None:
                here = {g.identity.servername for g in book.query("fqdn=host.test")}
                view = state.connectome_json()
                held = book.connectome()
                assert (held.id, held.version) == (view["id"], view["version"])
                assert [(c.id, c.src, c.dst) for c in held.connections] == [
                    (c["id"], c["source"], c["target"])
                    for c in view["connections"]
                    if {c["source"].split(".")[0], c["target"].split(".")[0]} <= here
                ]

            eventually(registered)
            eventually(agree)
            assert len(book.connectome().connections) == 2
            assert book.count("server=s terminal=out used") == 1

            gone = plan.connections[0]
            state.remove_connection(gone.id, "operator: disconnect")
            eventually(agree)
            assert [c.id for c in book.connectome().connections] == [plan.connections[1].id]

            os.kill(pids["b"], signal.SIGKILL)  # a server dies: it leaves, its uses go
            eventually(lambda: assert_absent(book, "b"))
            eventually(agree)
            assert book.connectome().connections == ()
            assert hooks.errors == []
        finally:
            kernel.stop()
            hooks.stop()
        assert book.query("fqdn=host.test") == []
        assert book.connectome().connections == ()
        book.close()

    def test_identity_from_manifest(self, tmp_path: Path, system: str) -> None:
        """Identities use the instance name, the manifest's fields and a stable UUID."""
        plan = build_plan(wiring(tmp_path, system))
        server = next(s for s in plan.servers if s.name == "a")
        identity = server_identity("host.test", system, server)
        assert (identity.servername, identity.klass, identity.owner) == ("a", 0x1300, "test")
        assert identity == server_identity("host.test", system, server)
        assert identity.uuid != server_identity("other.test", system, server).uuid
        with pytest.raises(IdentityError, match="fqdn"):
            KernelHooks(Hostess(tmp_path / "h.sqlite"), plan, fqdn="bad_host")


def assert_absent(book: Hostess, server: str) -> None:
    assert book.query(f"server={server}") == []
