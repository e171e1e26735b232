"""The discovery example's consumer: prints every candidate event discovery sends.

``watch`` reads ``discovery.candidates`` (one JSON object ``{event: added|dropped, reason,
candidate: {iface, identity, address, probes, ...}}`` per peer kernel vetted or dropped)
and prints each, so ``<run_dir>/watch.log`` is the story of who came and went; its status
line counts the peers present.
"""

from __future__ import annotations

import json

from control.manifest import manifest, terminal
from pykernel.server import ServerContext


@manifest(servername="watch", class_hex="0x7001", owner="examples",
          terminals=[terminal("events", "input", message_size=4096)])
def watch(ctx: ServerContext) -> int:
    """Print each candidate event; show how many peers are present."""
    present: set[str] = set()
    for msg in ctx.messages("events"):
        try:
            event = json.loads(msg)
        except ValueError:
            print(f"watch: not JSON: {msg[:80]!r}", flush=True)
            continue
        print(f"watch: {json.dumps(event, sort_keys=True)}", flush=True)
        candidate = event.get("candidate") or {}
        peer = f"{candidate.get('iface')}/{candidate.get('identity')}"
        if event.get("event") == "added":
            present.add(peer)
        else:  # dropped (TTL 0, expiry, failed re-vetting)
            present.discard(peer)
        ctx.status(f"{len(present)} peers")
    return 0
