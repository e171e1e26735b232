"""The HMI page in a real browser (Debian's headless Chromium driven by Playwright)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import require_tool
from test_surface_kit import PipeActions, served_system

from control.graph import SERVER_COLOURS
from control.surface import Surface

CHROMIUM = "/usr/lib/chromium/chromium"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module."""
    if not os.path.exists(CHROMIUM):
        require_tool("chromium")
    require_tool("dot")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM)
        yield b
        b.close()


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Surface, PipeActions]]:
    """The test system running on real pipes, sampled and served (each test leaves it as
    it found it: what is stopped is started again, what is connected disconnected)."""
    with served_system(tmp_path_factory.mktemp("hmi"), period=0.005, sample_every=0.2) as served:
        yield served


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page; console errors fail the test."""
    context = browser.new_context()
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.set_default_timeout(10_000)
    yield pg
    context.close()
    assert errors == []


def _rate(page: Any, source: str, target: str) -> float:
    cell = page.locator(f'tr[data-source="{source}"][data-target="{target}"] td.rate')
    return float(cell.get_attribute("data-value"))


class TestLivePage:
    """The page shows the system live and lets an operator act."""

    def test_loads_and_rates_change(self, system, page) -> None:  # type: ignore[no-untyped-def]
        """Kernel state, 5 servers, 4 connections with rates that move, no reload."""
        surface, _ = system
        page.goto(surface.url + "/")
        page.wait_for_selector("#kernel-state:text('running')")
        assert page.locator("#servers tbody tr").count() == 5
        assert page.locator("#connections tbody tr").count() == 4
        page.wait_for_selector("#diagram svg")
        page.evaluate("window.__marker = 1")  # survives only if the page never reloads
        seen = set()
        deadline = time.monotonic() + 8
        while len(seen) < 3 and time.monotonic() < deadline:
            seen.add(_rate(page, "src.out", "a.inp"))
            page.wait_for_timeout(250)
        assert len(seen) >= 3 and max(seen) > 0, seen
        page.wait_for_selector('tr[data-source="src.out"][data-target="a.inp"] '
                               'td.state[data-state="flowing"]')
        assert page.evaluate("window.__marker") == 1
        assert page.locator("#live").get_attribute("data-live") == "yes"
        assert page.locator("#events li").count() > 5

    def test_stop_click_stops_the_server(self, system, page) -> None:  # type: ignore[no-untyped-def]
        """Stop on worker a: its process ends, table and diagram show it stopped."""
        surface, actions = system
        page.goto(f"{surface.url}/#token={surface.token}")
        page.wait_for_selector("#token-state:text('operator')")
        assert "token" not in page.url  # the token leaves the address bar
        page.click('tr[data-server="a"] button.stop')
        page.wait_for_selector('tr[data-server="a"] td.state[data-state="stopped"]')
        assert surface.state.server_json("a")["state"] == "stopped"
        assert actions.procs.get("a") is None
        page.wait_for_selector('tr[data-source="src.out"][data-target="a.inp"] '
                               'td.state[data-state="broken"]')
        node = page.locator("#diagram g.node", has=page.locator("title", has_text="server:a"))
        node.locator("text", has_text="stopped").wait_for()
        assert node.locator("polygon").first.get_attribute("fill") == SERVER_COLOURS["stopped"]
        page.locator("#events li", has_text="a: running → stopped").wait_for()
        # ... and start brings it back.
        page.click('tr[data-server="a"] button.start')
        page.wait_for_selector('tr[data-server="a"] td.state[data-state="running"]')

    def test_connect_and_disconnect(self, system, page) -> None:  # type: ignore[no-untyped-def]
        """The connect form adds a connection; its disconnect button removes it."""
        surface, _ = system
        page.goto(f"{surface.url}/#token={surface.token}")
        page.wait_for_selector("#connect-source option[value='spare.out']", state="attached")
        page.select_option("#connect-source", "spare.out")
        page.select_option("#connect-target", "spare.inp")
        page.click("#connect-button")
        row = 'tr[data-source="spare.out"][data-target="spare.inp"]'
        page.wait_for_selector(row)
        assert page.locator("#connections tbody tr").count() == 5
        page.click(f"{row} button.disconnect")
        page.wait_for_selector(row, state="detached")
        assert len(surface.state.connections_json()) == 4

    def test_without_token_read_only(self, system, page) -> None:  # type: ignore[no-untyped-def]
        """No token: modify buttons are disabled; a wrong token gets the 401 shown."""
        surface, _ = system
        page.goto(surface.url + "/")
        page.wait_for_selector('tr[data-server="a"]')
        assert page.locator('tr[data-server="a"] button.stop').is_disabled()
        page.fill("#token", "wrong")
        page.click("#token-form button")
        page.click('tr[data-server="a"] button.stop')
        page.wait_for_selector("#message.error:has-text('401')")
        assert surface.state.server_json("a")["state"] == "running"
