"""Modifies through the control surface with a real (test) kernel: real pipes, processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_surface_kit import PipeActions, call, served_system

from control.lint import lint_file
from control.plan import build_plan, connection_id
from control.surface import Surface
from pykernel import Pipe, PipeNotFoundError


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Surface, PipeActions]]:
    """A booted test kernel served by a surface with its actions."""
    with served_system(tmp_path) as served:
        yield served


class TestConnect:
    """POST /api/connections and DELETE /api/connections/{id}."""

    def test_connect_then_disconnect(self, live, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
        """A new plain connection gets a real pipe, a new connectome, events; then goes."""
        surface, _ = live
        before = call("GET", surface.url + "/api/connectome")[1]
        status, made = call("POST", surface.url + "/api/connections",
                            {"source": "spare.out", "target": "spare.inp"}, surface.token)
        assert status == 201, made
        assert made["id"] == connection_id("spare.out", "spare.inp")
        assert made["state"] == "open" and made["pipe"] == "t.spare.out"
        with Pipe.open("t.spare.out") as pipe:
            assert pipe.slot_size == 64
        after = call("GET", surface.url + "/api/connectome")[1]
        assert after["version"] == before["version"] + 1 and after["id"] != before["id"]
        kinds = [(e["kind"], e["to"]) for e in call("GET", surface.url + "/api/events")[1]]
        assert ("connectome", "connected") in kinds
        # The changed system still exports to a clean wiring that plans to the new ID.
        path = tmp_path / "after.yaml"
        path.write_text(call("GET", surface.url + "/api/export")[1])
        assert lint_file(path).ok
        assert build_plan(path).connectome_id == after["id"]

        status, gone = call("DELETE", f"{surface.url}/api/connections/{made['id']}",
                            token=surface.token)
        assert status == 200 and gone["state"] == "closed"
        with pytest.raises(PipeNotFoundError):
            Pipe.open("t.spare.out")
        final = call("GET", surface.url + "/api/connectome")[1]
        assert final["id"] == before["id"] and final["version"] == before["version"] + 2

    def test_fan_out_extension(self, live) -> None:  # type: ignore[no-untyped-def]
        """Connecting another reader to the multiplexer reuses its pipe."""
        surface, _ = live
        status, made = call("POST", surface.url + "/api/connections",
                            {"source": "src.out", "target": "spare.inp"}, surface.token)
        assert status == 201 and made["pipe"] == "t.src.out"
        term = call("GET", surface.url + "/api/servers/src")[1]["terminals"][0]
        assert len(term["connections"]) == 3

    def test_second_connect_is_conflict(self, live) -> None:  # type: ignore[no-untyped-def]
        """The same connection twice: 409, the first one stands."""
        surface, _ = live
        body = {"source": "spare.out", "target": "spare.inp"}
        assert call("POST", surface.url + "/api/connections", body, surface.token)[0] == 201
        status, err = call("POST", surface.url + "/api/connections", body, surface.token)
        assert status == 409 and "already connected" in err["error"]["message"]
        assert len(surface.state.connections_json()) == 5


class TestServers:
    """POST /api/servers/{name}/stop|start|restart."""

    def test_stop_start_restart(self, live) -> None:  # type: ignore[no-untyped-def]
        """Stop kills the process and breaks its connections; start and restart bring it back."""
        surface, actions = live
        pid = surface.state.server_json("a")["pid"]
        status, body = call("POST", surface.url + "/api/servers/a/stop", token=surface.token)
        assert status == 202 and body["state"] == "stopped" and body["pid"] is None
        assert actions.procs.get("a") is None
        broken = {c["state"] for c in surface.state.connections_json()
                  if "a." in (c["source"][:2], c["target"][:2])}
        assert broken == {"broken"}
        status, body = call("POST", surface.url + "/api/servers/a/stop", token=surface.token)
        assert status == 409 and "not running" in body["error"]["message"]
        status, body = call("POST", surface.url + "/api/servers/a/start", token=surface.token)
        assert status == 202 and body["state"] == "running" and body["pid"] != pid
        assert {c["state"] for c in surface.state.connections_json()} == {"open"}
        started = surface.state.server_json("a")["starts"]
        status, body = call("POST", surface.url + "/api/servers/a/restart",
                            token=surface.token)
        assert status == 202 and body["starts"] == started + 1

    def test_kernel_refusal_is_409_and_nothing_changes(self, live) -> None:  # type: ignore[no-untyped-def]
        """The kernel cannot create the pipe (a stranger holds the name): 409, no change."""
        surface, _ = live
        before = surface.state.connections_json()
        with Pipe.create("t.spare.out", slot_size=8, slots=2) as stranger:
            try:
                status, body = call("POST", surface.url + "/api/connections",
                                    {"source": "spare.out", "target": "spare.inp"},
                                    surface.token)
            finally:
                Pipe.unlink(stranger.name)
        assert status == 409 and "kernel refused spare.out -> spare.inp" in \
            body["error"]["message"]
        assert surface.state.connections_json() == before


class TestSameVerdictAsLint:
    """A run-time connect is accepted exactly when lint accepts the file with it."""

    def test_every_terminal_pair(self, live, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
        """All 11 x 11 terminal pairs: the surface's 201/4xx equals lint's ok/error."""
        surface, _ = live
        base = (tmp_path / "system.yaml").read_text()
        ends = [t["id"] for t in surface.state.terminals_json()]
        assert len(ends) == 11
        accepted = 0
        for source in ends:
            for target in ends:
                path = tmp_path / "probe.yaml"
                path.write_text(base + f"  - {source} -> {target}\n")
                lint_ok = lint_file(path).ok
                status, body = call("POST", surface.url + "/api/connections",
                                    {"source": source, "target": target}, surface.token)
                assert (status == 201) == lint_ok, (source, target, status, body)
                if status == 201:
                    accepted += 1
                    gone = call("DELETE", f"{surface.url}/api/connections/{body['id']}",
                                token=surface.token)
                    assert gone[0] == 200, gone
                else:
                    assert 400 <= status < 500 and body["error"]["message"]
                assert len(surface.state.connections_json()) == 4
        assert accepted >= 2  # e.g. spare.out -> spare.inp, src.out -> spare.inp
