"""End to end: the real kernel runs examples/demo.yaml; its surface, CLI and HMI show it live."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import require_tool

from control.kernel import Kernel
from control.plan import build_plan
from control.state_kernel import LiveSystem
from pykernel.cli import main

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo.yaml"
CHROMIUM = "/usr/lib/chromium/chromium"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Kernel, LiveSystem]]:
    """The demo system booted by the real kernel, with its live state and surface (one per
    module: the browser test, last, shuts it down)."""
    # Pipe names are host-wide: the demo under a name of its own cannot meet another run.
    tmp = tmp_path_factory.mktemp("demo")
    wiring = yaml.safe_load(DEMO.read_text())
    wiring["system"] = f"demo-hmi-{os.getpid()}"
    wiring["python_path"] = [str(DEMO.parent.parent)]
    (tmp / "demo.yaml").write_text(yaml.safe_dump(wiring))
    kernel = Kernel(build_plan(tmp / "demo.yaml"), run_dir=tmp / "run")
    live = LiveSystem(kernel, interval=0.2).start()
    try:
        kernel.start()
        live.booted()
        yield kernel, live
    finally:
        live.stopping()
        kernel.stop()
        live.stop()


def _until(cond: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


class TestDemoLive:
    """The demo's state, flow and events through the surface."""

    def test_state_follows_the_executor(self, demo) -> None:  # type: ignore[no-untyped-def]
        """Every server went declared → starting → ready → running with the executor's pids."""
        kernel, live = demo
        servers = {s["name"]: s for s in live.state.servers_json()}
        status = kernel.status()
        for name in ("source", "worker_a", "worker_b", "sink"):
            assert servers[name]["state"] == "running"
            assert servers[name]["pid"] == status.service(name).pid
        moves = [(e["from"], e["to"]) for e in live.state.events_json()
                 if e["subject"] == "sink" and e["kind"] == "server"]
        assert moves[:2] == [("declared", "starting"), ("starting", "ready")]
        assert live.feed.refused == 0

    def test_every_connection_flows_with_its_own_rate(self, demo) -> None:  # type: ignore[no-untyped-def]
        """Fan-out readers and fan-in writers each get their own counters."""
        _, live = demo
        _until(lambda: {c["state"] for c in live.state.connections_json()} == {"flowing"})
        # Each rate needs two samples apart: wait for all with a deadline, not a fixed sleep.
        _until(lambda: all(c["flow"]["msgs_per_s"] > 0 for c in live.state.connections_json()))
        pipes = {p["name"]: p for p in live.state.pipes_json()}
        system = live.state.system
        assert len(pipes[f"{system}.source.frames"]["stats"]["readers"]) == 2
        assert len(pipes[f"{system}.sink.results"]["stats"]["writers"]) == 2

    def test_modify_refusals(self, demo) -> None:  # type: ignore[no-untyped-def]
        """On the demo every legal edge exists: a duplicate is 409, removing a required
        input's feed 422, and nothing changes."""
        from test_surface_kit import call

        _, live = demo
        before = live.state.connections_json()
        status, body = call("POST", live.url + "/api/connections",
                            {"source": "worker_a.results", "target": "sink.results"},
                            live.surface.token)
        assert status == 409 and "already connected" in body["error"]["message"]
        cid = next(c["id"] for c in before if c["target"] == "worker_b.frames")
        status, body = call("DELETE", f"{live.url}/api/connections/{cid}",
                            token=live.surface.token)
        assert status == 422 and "worker_b.frames is not connected" in body["error"]["message"]
        assert [c["id"] for c in live.state.connections_json()] == [c["id"] for c in before]

    def test_cli_status_by_run_dir(self, demo, capsys) -> None:  # type: ignore[no-untyped-def]
        """`pykernel status --run-dir` finds the kernel and shows the flow."""
        kernel, _ = demo
        assert main(["status", "--run-dir", str(kernel.run_dir), "--json"]) == 0
        data = json.loads(capsys.readouterr().out)
        assert data["system"]["system"].startswith("demo-hmi-")
        assert data["system"]["state"] == "running"

    def test_hmi_shows_the_demo(self, demo) -> None:  # type: ignore[no-untyped-def]
        """Headless Chromium: running kernel, four flowing connections, rates that move,
        fan-out and fan-in in the diagram, a stop click stops a worker (table and diagram
        show it) and start brings it back; the shutdown shows servers stopping."""
        if not os.path.exists(CHROMIUM):
            require_tool("chromium")
        require_tool("dot")
        from playwright.sync_api import sync_playwright

        kernel, live = demo
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM)
            try:
                page = browser.new_page()
                page.set_default_timeout(10_000)
                page.goto(live.url + "/")
                page.wait_for_selector("#kernel-state:text('running')")
                page.wait_for_function(
                    "document.querySelectorAll('#connections td.state[data-state=flowing]')"
                    ".length === 4")
                cell = 'tr[data-source="source.frames"][data-target="worker_a.frames"] td.rate'
                seen: set[str] = set()
                deadline = time.monotonic() + 6
                while time.monotonic() < deadline and not (
                        len(seen) >= 2 and any(float(v) > 0 for v in seen)):
                    seen.add(page.locator(cell).get_attribute("data-value"))
                    page.wait_for_timeout(200)
                assert len(seen) >= 2 and any(float(v) > 0 for v in seen), seen
                diagram = page.locator("#diagram svg").text_content() or ""
                assert "fan-out" in diagram and "fan-in" in diagram
                # The operator stops worker_b: the executor stops it, the page shows it.
                page.evaluate(f"setToken({live.surface.token!r})")
                page.click('tr[data-server="worker_b"] button.stop')
                page.wait_for_selector('tr[data-server="worker_b"] '
                                       'td.state[data-state="stopped"]')
                assert kernel.status().service("worker_b").pid is None
                page.wait_for_selector('tr[data-source="source.frames"]'
                                       '[data-target="worker_b.frames"] '
                                       'td.state[data-state="broken"]')
                node = page.locator("#diagram g.node",
                                    has=page.locator("title", has_text="server:worker_b"))
                node.locator("text", has_text="stopped").wait_for()
                page.click('tr[data-server="worker_b"] button.start')
                page.wait_for_selector("#message:has-text('start: done')")
                page.wait_for_selector('tr[data-server="worker_b"] '
                                       'td.state[data-state="running"]')
                live.stopping()  # as `pykernel up` does on a signal; the surface stays up
                kernel.stop()
                page.wait_for_function(
                    "document.querySelectorAll('#servers td.state[data-state=stopped]')"
                    ".length === 4")
                page.wait_for_selector("#kernel-state:text('stopping')")
            finally:
                browser.close()
