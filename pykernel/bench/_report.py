"""The comparison as data: the table, the ratios to each peer, the targets, the machine."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from pykernel.bench._harness import CaseResult
from pykernel.bench._stats import ratio


@dataclass(frozen=True)
class Metric:
    """One column: ``case.field``, its heading, and whether lower or higher is better."""

    case: str
    field: str
    heading: str
    lower_is_better: bool = False

    @property
    def key(self) -> str:
        """``case.field``, the id used in JSON."""
        return f"{self.case}.{self.field}"


METRICS: tuple[Metric, ...] = (
    Metric("rtt64", "p50_us", "RTT p50 µs", True),
    Metric("rtt64", "p99_us", "p99 µs", True),
    Metric("rtt64", "p999_us", "p99.9 µs", True),
    Metric("oneway64", "msgs_per_s", "64B msg/s"),
    Metric("oneway4k", "msgs_per_s", "4KiB msg/s"),
    Metric("oneway4k", "mb_per_s", "4KiB MB/s"),
    Metric("oneway1m", "msgs_per_s", "1MiB msg/s"),
    Metric("oneway1m", "mb_per_s", "1MiB MB/s"),
    Metric("fanout64", "msgs_per_s", "1→4 msg/s"),
    Metric("fanin64", "msgs_per_s", "4→1 msg/s"),
)
_BY_KEY = {m.key: m for m in METRICS}


@dataclass(frozen=True)
class Target:
    """A goal pykernel is held to, evaluated in the same run.

    Attributes:
        text: the goal in words.
        metric: the metric key it is about.
        variants: pykernel rows that may meet it (the best of them counts).
        versus: a peer key, ``best`` (the best peer), or ``None`` for an absolute bound.
        factor: pykernel must be <= factor x peer (lower is better) or >= factor x peer
            (higher is better); with ``versus=None`` the bound itself.

    """

    text: str
    metric: str
    variants: tuple[str, ...]
    versus: str | None
    factor: float


TARGETS: tuple[Target, ...] = (
    Target("RTT p50 at most 1/3 of the best peer", "rtt64.p50_us", ("pykernel",), "best", 1 / 3),
    Target("RTT p99.9 at most 1/2 of the best peer", "rtt64.p999_us", ("pykernel",), "best", 0.5),
    Target(
        "64 B one per call at least 1.3x the best peer",
        "oneway64.msgs_per_s",
        ("pykernel",),
        "best",
        1.3,
    ),
    Target(
        "64 B batched at least 10 M msgs/s",
        "oneway64.msgs_per_s",
        ("pykernel-batch", "pykernel-packed"),
        None,
        10e6,
    ),
    Target(
        "1 MiB zero-copy at least iceoryx2",
        "oneway1m.msgs_per_s",
        ("pykernel-zc",),
        "iceoryx2",
        1.0,
    ),
    Target(
        "fan-out 1->4 at least 2x pyzmq PUB/SUB",
        "fanout64.msgs_per_s",
        ("pykernel", "pykernel-batch", "pykernel-packed"),
        "zmq-pubsub",
        2.0,
    ),
    Target(
        "fan-in 4->1 at least 2x pyzmq PUSH/PULL",
        "fanin64.msgs_per_s",
        ("pykernel", "pykernel-batch", "pykernel-packed"),
        "zmq-pushpull",
        2.0,
    ),
)


@dataclass(frozen=True)
class TransportInfo:
    """A row: who it is, how it waits, its version, and whether it could run."""

    key: str
    label: str
    wait: str
    version: str
    status: str  # ok | not installed | pipe core not built | excluded
    is_pykernel: bool


def machine_info() -> dict[str, object]:
    """CPU model, cores (online and usable), kernel, Python, virtualisation if known."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    virt = "unknown"
    try:
        with open("/sys/class/dmi/id/sys_vendor", encoding="utf-8") as f:
            virt = f.read().strip() or virt
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cores_online": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "system_vendor": virt,
    }


def values(results: Sequence[CaseResult]) -> dict[str, dict[str, float]]:
    """``{transport: {metric key: value}}`` for every successful case."""
    out: dict[str, dict[str, float]] = {}
    for r in results:
        if r.status != "ok":
            continue
        for m in METRICS:
            if m.case == r.case and m.field in r.metrics:
                out.setdefault(r.transport, {})[m.key] = r.metrics[m.field]
    return out


def best_peer(
    vals: dict[str, dict[str, float]], peers: Sequence[str], metric: str
) -> tuple[str, float] | None:
    """Return the best peer and its value for ``metric`` (min for latency, max otherwise)."""
    have = [(p, vals[p][metric]) for p in peers if metric in vals.get(p, {})]
    if not have:
        return None
    lower = _BY_KEY[metric].lower_is_better
    return min(have, key=lambda x: x[1]) if lower else max(have, key=lambda x: x[1])


def ratios(
    vals: dict[str, dict[str, float]], pykernels: Sequence[str], peers: Sequence[str]
) -> dict[str, dict[str, dict[str, float | str | None]]]:
    """Pykernel ÷ peer for every pykernel row, metric and peer, plus the best peer.

    Returns ``{pykernel row: {metric: {peer: ratio, ..., "best_peer": key, "vs_best":
    ratio}}}``. A ratio below 1 is better for latency, above 1 better for throughput.
    """
    out: dict[str, dict[str, dict[str, float | str | None]]] = {}
    for pk in pykernels:
        for metric, mine in vals.get(pk, {}).items():
            row: dict[str, float | str | None] = {
                p: ratio(mine, vals[p][metric]) for p in peers if metric in vals.get(p, {})
            }
            best = best_peer(vals, peers, metric)
            if best is not None:
                row["best_peer"] = best[0]
                row["vs_best"] = ratio(mine, best[1])
            out.setdefault(pk, {})[metric] = row
    return out


def evaluate(
    target: Target, vals: dict[str, dict[str, float]], peers: Sequence[str]
) -> dict[str, object]:
    """Decide one target: ``met`` True/False, or None when a number is missing."""
    lower = _BY_KEY[target.metric].lower_is_better
    mine = [
        (v, vals[v][target.metric]) for v in target.variants if target.metric in vals.get(v, {})
    ]
    out: dict[str, object] = {
        "target": target.text,
        "metric": target.metric,
        "met": None,
        "pykernel": None,
        "value": None,
        "versus": target.versus,
        "reference": None,
        "ratio": None,
    }
    if not mine:
        out["why"] = "no pykernel number"
        return out
    variant, value = min(mine, key=lambda x: x[1]) if lower else max(mine, key=lambda x: x[1])
    out.update(pykernel=variant, value=value)
    if target.versus is None:
        ref = target.factor
        out.update(reference=ref, met=value <= ref if lower else value >= ref)
        return out
    if target.versus == "best":
        best = best_peer(vals, peers, target.metric)
    elif target.metric in vals.get(target.versus, {}):
        best = (target.versus, vals[target.versus][target.metric])
    else:
        best = None
    if best is None:
        out["why"] = f"no number for {target.versus}"
        return out
    r = ratio(value, best[1])
    out.update(versus=best[0], reference=best[1], ratio=r)
    if r is not None:
        out["met"] = r <= target.factor if lower else r >= target.factor
    return out


@dataclass(frozen=True)
class Report:
    """Everything one run produced: machine, settings, rows, raw results."""

    machine: dict[str, object]
    config: dict[str, object]
    transports: tuple[TransportInfo, ...]
    results: tuple[CaseResult, ...]

    def _keys(self) -> tuple[list[str], list[str]]:
        ran = [t for t in self.transports if t.status == "ok"]
        return ([t.key for t in ran if t.is_pykernel], [t.key for t in ran if not t.is_pykernel])

    def to_json(self) -> dict[str, object]:
        """Raw numbers, ratios, targets and machine info as plain JSON data."""
        vals = values(self.results)
        pykernels, peers = self._keys()
        return {
            "machine": self.machine,
            "config": self.config,
            "metrics": [
                {"key": m.key, "heading": m.heading, "lower_is_better": m.lower_is_better}
                for m in METRICS
            ],
            "transports": [asdict(t) for t in self.transports],
            "results": [asdict(r) for r in self.results],
            "values": vals,
            "ratios": ratios(vals, pykernels, peers),
            "targets": [evaluate(t, vals, peers) for t in TARGETS],
        }
