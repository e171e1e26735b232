"""Python ends around the C server ``pk-upper``: a feeder of text lines and a checker.

``feeder`` writes ``message <seq> from feeder`` lines (``DEMO_MESSAGES`` of them, default
1000; 0: until stopped); ``checker`` expects each back upper-cased, in order, and writes
``checker-report.json`` (``received``, ``verified``, ``errors``, ``first_error``) in the
run directory twice a second and at the end.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from control.manifest import manifest, terminal
from pykernel.server import ServerContext

LINE_SIZE = 256


def line(seq: int) -> bytes:
    """Return the feeder's message number ``seq``."""
    return f"message {seq} from feeder".encode()


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, sort_keys=True))
    tmp.replace(path)


@manifest(servername="feeder", class_hex="0x50", owner="demo",
          terminals=[terminal("out", "output", message_size=LINE_SIZE)])
def feeder(ctx: ServerContext) -> int:
    """Send numbered lines, then wait to be stopped."""
    from pykernel import PipeTimeout

    limit = int(os.environ.get("DEMO_MESSAGES", "1000"))
    out = ctx.terminal("out")
    sent = 0
    while not ctx.stopping.is_set() and (limit == 0 or sent < limit):
        try:
            out.send(line(sent), timeout=0.2)
        except PipeTimeout:
            continue
        sent += 1
    _write_json(Path(ctx.run_dir or ".") / "feeder-report.json", {"sent": sent})
    while not ctx.stopping.wait(0.2):
        pass
    return 0


@manifest(servername="checker", class_hex="0x51", owner="demo",
          terminals=[terminal("in", "input", message_size=LINE_SIZE)])
def checker(ctx: ServerContext) -> int:
    """Check every line came back upper-cased and in order."""
    report = Path(ctx.run_dir or ".") / "checker-report.json"
    state: dict[str, Any] = {"received": 0, "verified": 0, "errors": 0, "first_error": ""}
    next_write = 0.0

    def idle() -> None:
        _write_json(report, {**state, "final": False})

    for msg in ctx.messages("in", on_idle=idle):
        expected = line(state["received"]).upper()
        state["received"] += 1
        if msg == expected:
            state["verified"] += 1
        else:
            state["errors"] += 1
            state["first_error"] = state["first_error"] or f"got {msg!r}, expected {expected!r}"
        if time.monotonic() >= next_write:
            _write_json(report, {**state, "final": False})
            next_write = time.monotonic() + 0.5
    _write_json(report, {**state, "final": True})
    return 0 if state["errors"] == 0 else 1
