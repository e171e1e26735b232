"""The parent side: fork the children of one case, watch them, kill the hung, collect.

Every case runs in its own set of forked children (two for 1:1 and ping-pong, five for the
fans); the parent only creates links, waits and computes. A child that reports an error,
dies without a report, or is still running at the case deadline makes the case ``failed``
or ``timeout``; the remaining children are killed (SIGKILL, by handle) and the run goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import count as _counter
from multiprocessing.connection import Connection, wait
from typing import IO, Any

from pykernel.bench import _hang as hang
from pykernel.bench._cases import BenchConfig, Case
from pykernel.bench._child import End, Role, Sync, child_main
from pykernel.bench._stats import summarize
from pykernel.bench._transport import Link, Transport

_CTX = mp.get_context("fork")
_SERIAL = _counter()
_POLL_S = 0.05
MAX_SCALE = 64  # a too-short case is rerun with at most this many times the messages
_GRACE_S = 1.0


@dataclass(frozen=True)
class CaseResult:
    """The outcome of one transport in one case.

    Attributes:
        transport: the transport's key.
        case: the case key.
        status: ``ok``, ``failed`` (an error, named in ``error``) or ``timeout``.
        metrics: the numbers (see ``_stats.summarize``); empty unless ``ok``.
        error: one line saying what went wrong and in which process.
        seconds: wall time the case took, setup and teardown included.

    """

    transport: str
    case: str
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0


def roles_for(case: Case, cpus: list[int] | None) -> list[Role]:
    """Return the child processes of ``case``, each pinned when ``cpus`` has 2+ cores.

    The lone side (the ping-pong client, the one writer, the fan-in reader) gets the first
    core; the other side is spread over the rest.
    """
    if case.workload == "rtt":
        lone = Role("client", "client", (End(0, "w", 0), End(1, "r", 0)), None)
        many = [Role("echo", "echo", (End(0, "r", 0), End(1, "w", 0)), None)]
    elif case.workload == "fanin":
        lone = Role("reader 0", "reader", (End(0, "r", 0),), None)
        many = [Role(f"writer {i}", "writer", (End(0, "w", i),), None) for i in range(case.fan)]
    else:
        lone = Role("writer 0", "writer", (End(0, "w", 0),), None)
        many = [Role(f"reader {i}", "reader", (End(0, "r", i),), None) for i in range(case.readers)]
    if not cpus or len(cpus) < 2:
        return [lone, *many]
    rest = cpus[1:]
    pinned = [Role(r.name, r.kind, r.ends, rest[i % len(rest)]) for i, r in enumerate(many)]
    return [Role(lone.name, lone.kind, lone.ends, cpus[0]), *pinned]


def run_case(transport: Transport, case: Case, config: BenchConfig, scale: int = 1) -> CaseResult:
    """Run ``transport`` through ``case`` in fresh child processes; never raises for it.

    ``scale`` multiplies the case's message count (see :func:`measure`).

    Returns:
        The :class:`CaseResult`: ``ok`` with metrics, or ``failed``/``timeout`` with the
        reason. The transport's links are closed and every child is gone on return.

    """
    began = time.monotonic()
    prefix = f"pkb.{os.getpid()}.{next(_SERIAL)}.{transport.key}.{case.key}"
    links: list[Link] = []
    procs: list[tuple[Role, Any, Connection]] = []
    dumps: dict[str, IO[bytes]] = {}
    status = "failed"
    stack = contextlib.ExitStack()
    try:
        for channel in case.channels(config.depth_for(case), prefix):
            links.append(transport.open(channel))
        cpus = sorted(os.sched_getaffinity(0)) if config.pin else None
        roles = roles_for(case, cpus)
        n = len(roles)
        sync = Sync(
            start=_CTX.Barrier(n),
            go=_CTX.Barrier(n),
            done=_CTX.Barrier(n),
            acks=[_CTX.RawArray("b", case.readers * case.writers) for _ in links],
            timeout=config.timeout,
            repeat_warmup=transport.drops_until_joined,
        )
        count = config.count(case) * scale
        for role in roles:
            mine, theirs = _CTX.Pipe(duplex=False)
            dump = stack.enter_context(tempfile.TemporaryFile())  # noqa: SIM115 - ExitStack
            dumps[role.name] = dump
            proc = _CTX.Process(
                target=child_main,
                args=(role, case, count, links, sync, theirs, dump),
                name=f"pykernel-bench {transport.key} {case.key} {role.name}",
                daemon=True,
            )
            proc.start()
            theirs.close()
            procs.append((role, proc, mine))
        status, error, reports = _collect(procs, began + config.timeout, dumps)
        metrics: dict[str, float] = {}
        if status == "ok":
            metrics = summarize(case, reports, config.rtt_warmup)
        return CaseResult(transport.key, case.key, status, metrics, error, time.monotonic() - began)
    except Exception as exc:  # one transport's failure must not end the run
        return CaseResult(
            transport.key,
            case.key,
            "failed",
            {},
            f"setup: {type(exc).__name__}: {exc}",
            time.monotonic() - began,
        )
    finally:
        _reap(procs, patient=status == "ok")
        stack.close()
        for link in links:
            with contextlib.suppress(Exception):  # best effort: the case result stands
                link.close()


def _collect(
    procs: list[tuple[Role, Any, Connection]],
    deadline: float,
    dumps: dict[str, IO[bytes]],
) -> tuple[str, str | None, list[dict]]:
    pending = {conn: (role, proc) for role, proc, conn in procs}
    reports: list[dict] = []
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            hang.request([proc for _, proc in pending.values()])
            names = ", ".join(
                f"{role.name} (stuck in {hang.summary(dumps[role.name]) or 'unknown'})"
                for role, _ in pending.values()
            )
            return "timeout", f"no result within the case timeout from: {names}", reports
        for conn in wait(list(pending), timeout=min(left, _POLL_S)):
            role, proc = pending.pop(conn)  # type: ignore[call-overload]
            try:
                report = conn.recv()
            except EOFError:
                proc.join(_GRACE_S)
                return (
                    "failed",
                    f"{role.name} exited with code {proc.exitcode} without a result",
                    reports,
                )
            if "error" in report:
                return "failed", str(report["error"]), reports
            reports.append(report)
        # A child killed by a signal may not close its pipe (siblings inherited it).
        for conn, (role, proc) in list(pending.items()):
            if proc.exitcode is not None and not conn.poll(_POLL_S):
                return (
                    "failed",
                    f"{role.name} exited with code {proc.exitcode} without a result",
                    reports,
                )
    return "ok", None, reports


def _reap(procs: list[tuple[Role, Any, Connection]], patient: bool) -> None:
    """Let finished children exit (``patient``), kill the rest (by handle), join, close."""
    if patient:
        for _, proc, _ in procs:
            proc.join(_GRACE_S)
    for _, proc, _ in procs:
        if proc.is_alive():
            proc.kill()
    for _, proc, conn in procs:
        proc.join(_GRACE_S * 5)
        conn.close()
        if proc.exitcode is not None:
            proc.close()


def run_all(
    transports: Iterable[Transport],
    cases: Iterable[Case],
    config: BenchConfig,
    on_step: Callable[[int, int, str], None] | None = None,
) -> list[CaseResult]:
    """Run every transport through every case it supports, ``config.repeat`` times.

    Rounds are interleaved (all transports of a case, then again), so a burst of load
    from other users hits every row alike; each metric is the median over the rounds.
    """
    rows = list(transports)
    by_case = [(c, [t for t in rows if c.key in t.cases]) for c in cases]
    steps = sum(len(ts) for _, ts in by_case) * config.repeat
    step = 0
    results: list[CaseResult] = []
    for case, ts in by_case:
        rounds: dict[str, list[CaseResult]] = {t.key: [] for t in ts}
        for _ in range(config.repeat):
            for t in ts:
                if on_step is not None:
                    on_step(step, steps, f"{t.label} {case.key}")
                step += 1
                rounds[t.key].append(measure(t, case, config))
        results.extend(merge_rounds(rounds[t.key]) for t in ts)
    return results


def measure(transport: Transport, case: Case, config: BenchConfig) -> CaseResult:
    """Run a case; if a throughput case ended too fast to measure, rerun it longer.

    A run shorter than ``config.min_seconds`` is repeated with its message count scaled
    so it lasts about that long (at most ``MAX_SCALE`` times), and the longer run counts.
    The same rule holds for every row, so fast transports are not judged on milliseconds.
    """
    first = run_case(transport, case, config)
    took = first.metrics.get("seconds", 0.0)
    if first.status != "ok" or case.workload == "rtt" or took >= config.min_seconds:
        return first
    scale = min(MAX_SCALE, math.ceil(config.min_seconds / max(took, 1e-4)))
    if scale < 2:
        return first
    longer = run_case(transport, case, config, scale)
    return dataclasses.replace(longer, seconds=first.seconds + longer.seconds)


def merge_rounds(rounds: list[CaseResult]) -> CaseResult:
    """Combine repeated runs of one case: the first failure wins, else per-metric medians."""
    first = rounds[0]
    seconds = sum(r.seconds for r in rounds)
    for r in rounds:
        if r.status != "ok":
            return CaseResult(r.transport, r.case, r.status, {}, r.error, seconds)
    metrics = {k: statistics.median(r.metrics[k] for r in rounds) for k in first.metrics}
    if len(rounds) > 1:
        metrics["rounds"] = float(len(rounds))
    return CaseResult(first.transport, first.case, "ok", metrics, None, seconds)
