"""``pykernel bench [--quick] [--json] [--peers ...] [--sizes ...]``.

Outside the ``pykernel.bench`` package, and importing it only when the verb runs, so that
building the ``pykernel`` parser does not load the harness (numpy, every peer adapter).
"""

from __future__ import annotations

import argparse
import dataclasses

from pykernel.cli import add_json_flag, emit


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench`` verb to the ``pykernel`` command."""
    p = subparsers.add_parser(
        "bench",
        help="compare pykernel pipes with other IPC transports, side by side",
        description="Ping-pong latency, one-way throughput (64 B, 4 KiB, 1 MiB), fan-out "
        "1->4 and fan-in 4->1 for pykernel and every installed peer, in one run; every "
        "message verified. Prints a table, the ratios and the targets.",
    )
    p.add_argument("--quick", action="store_true", help="fewer messages: well under a minute")
    p.add_argument(
        "--peers",
        metavar="KEYS",
        help="comma-separated peers to include (pykernel always runs), e.g. "
        "mp-pipe,zmq-pair,iceoryx2",
    )
    p.add_argument(
        "--sizes", metavar="SIZES", help="comma-separated message sizes to include: 64, 4KiB, 1MiB"
    )
    p.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help="seconds one case may run before it is killed and reported",
    )
    p.add_argument(
        "--repeat",
        type=int,
        metavar="N",
        help="run every case N times (interleaved) and report medians",
    )
    p.add_argument(
        "--depth",
        type=int,
        metavar="N",
        help="queue depth in messages below 64 KiB, for every transport that lets us choose "
        "(default 256)",
    )
    p.add_argument(
        "--markdown",
        action="store_true",
        help="print the table and verdicts as Markdown (for a README)",
    )
    add_json_flag(p)
    p.set_defaults(func=_run)


def _split(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


def _run(args: argparse.Namespace) -> int:
    from pykernel._progress import Progress
    from pykernel.bench import BenchConfig, parse_size, render, render_markdown, run_bench

    config = BenchConfig.quick() if args.quick else BenchConfig()
    overrides = {"timeout": args.timeout, "repeat": args.repeat, "depth": args.depth}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides:
        config = dataclasses.replace(config, **overrides)
    sizes = _split(args.sizes)
    progress = Progress()
    try:
        report = run_bench(
            config,
            peers=_split(args.peers),
            sizes=None if sizes is None else [parse_size(s) for s in sizes],
            mode="quick" if args.quick else "full",
            on_step=lambda i, n, what: progress.update(f"[{i + 1}/{n}] {what}"),
        )
    finally:
        progress.done()
    data = report.to_json()
    emit(args, data, render_markdown if args.markdown else render)
    return 0
