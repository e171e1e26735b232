"""``pykernel bench``: pykernel pipes side by side with other IPC transports, one run.

Every transport runs the same cases in its own forked processes (pinned to different
cores when there are two or more): ping-pong round trip at 64 B, one-way throughput at
64 B, 4 KiB and 1 MiB, fan-out 1→4 and fan-in 4→1. Every message is verified (writer,
sequence, both-end tags, body pattern, count). A peer that is not installed is listed as
such; a peer that fails or hangs is killed and reported, and the run goes on.

    from pykernel.bench import BenchConfig, run_bench
    report = run_bench(BenchConfig.quick())
    data = report.to_json()      # raw numbers, ratios, targets, machine
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict

from pykernel.bench._cases import CASES, BenchConfig, Case, parse_size
from pykernel.bench._errors import BenchError, TransportError, VerifyError
from pykernel.bench._harness import CaseResult, run_all, run_case
from pykernel.bench._peer_iceoryx2 import Iceoryx2
from pykernel.bench._peers_ext import FasterFifo, ZmqPair, ZmqPubSub, ZmqPushPull
from pykernel.bench._peers_std import MpPipe, MpQueue, OsPipe
from pykernel.bench._pykernel import (
    PykernelBatch,
    PykernelPacked,
    PykernelPerCall,
    PykernelZeroCopy,
)
from pykernel.bench._render import render, render_markdown
from pykernel.bench._report import METRICS, TARGETS, Report, TransportInfo, machine_info
from pykernel.bench._transport import Channel, Link, Receiver, Sender, Transport

__all__ = [
    "CASES",
    "METRICS",
    "TARGETS",
    "BenchConfig",
    "BenchError",
    "Case",
    "CaseResult",
    "Channel",
    "Link",
    "Receiver",
    "Report",
    "Sender",
    "Transport",
    "TransportError",
    "TransportInfo",
    "VerifyError",
    "default_transports",
    "parse_size",
    "render",
    "render_markdown",
    "run_bench",
    "run_case",
]


def default_transports() -> list[Transport]:
    """Every row of the standard comparison: the pykernel variants first, then the peers."""
    return [
        PykernelPerCall(),
        PykernelBatch(),
        PykernelPacked(),
        PykernelZeroCopy(),
        MpQueue(),
        MpPipe(),
        OsPipe(),
        FasterFifo(),
        ZmqPair(),
        ZmqPubSub(),
        ZmqPushPull(),
        Iceoryx2(),
    ]


def run_bench(
    config: BenchConfig | None = None,
    *,
    transports: Sequence[Transport] | None = None,
    peers: Iterable[str] | None = None,
    sizes: Iterable[int] | None = None,
    mode: str = "custom",
    on_step: Callable[[int, int, str], None] | None = None,
) -> Report:
    """Run the comparison and return its :class:`Report`.

    Args:
        config: counts, depths and timeouts (default: the full run).
        transports: the rows (default: :func:`default_transports`).
        peers: keep only these peer keys (pykernel rows always run); None keeps all.
        sizes: keep only cases with these message sizes in bytes; None keeps all.
        mode: a label stored in the report (``quick``, ``full``).
        on_step: called as ``on_step(done, total, what)`` before each case (progress).

    Raises:
        BenchError: an unknown peer key or a size no case uses.

    """
    config = config or BenchConfig()
    rows = list(transports) if transports is not None else default_transports()
    keys = {t.key for t in rows}
    wanted = None if peers is None else set(peers)
    if wanted is not None and (unknown := wanted - keys):
        raise BenchError(
            f"--peers: unknown {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(t.key for t in rows if not t.is_pykernel))}"
        )
    cases = list(CASES)
    if sizes is not None:
        chosen = set(sizes)
        if unknown_sizes := chosen - {c.size for c in CASES}:
            raise BenchError(
                f"--sizes: no case uses {sorted(unknown_sizes)} bytes; "
                f"sizes are {sorted({c.size for c in CASES})}"
            )
        cases = [c for c in CASES if c.size in chosen]
    infos, runnable = [], []
    for t in rows:
        status = t.unavailable() or (
            "excluded" if wanted is not None and not t.is_pykernel and t.key not in wanted else "ok"
        )
        infos.append(TransportInfo(t.key, t.label, t.wait, t.version(), status, t.is_pykernel))
        if status == "ok":
            runnable.append(t)
    load_before = os.getloadavg()[0]
    results = run_all(runnable, cases, config, on_step)
    machine = machine_info() | {"load_before": load_before, "load_after": os.getloadavg()[0]}
    settings = asdict(config) | {"mode": mode, "cases": [c.key for c in cases]}
    settings["counts"] = dict(config.counts)
    return Report(machine, settings, tuple(infos), tuple(results))
