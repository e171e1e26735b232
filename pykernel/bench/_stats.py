"""From raw child reports to numbers: percentiles, throughput, ratios. Pure functions."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from pykernel.bench._cases import Case
from pykernel.bench._errors import BenchError


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0 < q <= 100) of already sorted values.

    Raises:
        BenchError: no values, or ``q`` out of range.

    """
    if not sorted_values:
        raise BenchError("percentile of no samples")
    if not 0 < q <= 100:
        raise BenchError(f"percentile {q} is outside (0, 100]")
    rank = math.ceil(q / 100 * len(sorted_values))
    return float(sorted_values[max(rank, 1) - 1])


def summarize(
    case: Case, reports: Sequence[Mapping[str, int | list[int]]], warmup: int = 0
) -> dict[str, float]:
    """Turn the children's raw reports for ``case`` into its metrics.

    ``rtt``: ``p50_us``, ``p99_us``, ``p999_us``, ``mean_us``, ``samples`` from the client's
    round-trip samples (the first ``warmup`` dropped). Throughput cases: ``msgs_per_s``
    (messages delivered per second, summed over readers), ``mb_per_s`` and ``seconds``,
    timed from the first writer's start to the last reader's end.

    Raises:
        BenchError: reports missing what the case needs.

    """
    if case.workload == "rtt":
        samples = [r["samples"] for r in reports if "samples" in r]
        if len(samples) != 1:
            raise BenchError(f"{case.key}: expected one client report, got {len(samples)}")
        timed = sorted(samples[0][warmup:])  # type: ignore[index]
        if not timed:
            raise BenchError(f"{case.key}: no round-trip samples after {warmup} warm-up ones")
        return {
            "p50_us": percentile(timed, 50) / 1e3,
            "p99_us": percentile(timed, 99) / 1e3,
            "p999_us": percentile(timed, 99.9) / 1e3,
            "mean_us": sum(timed) / len(timed) / 1e3,
            "samples": float(len(timed)),
        }
    starts = [r["t0"] for r in reports if "sent" in r]
    ends = [r["t1"] for r in reports if "received" in r]
    received = sum(int(r["received"]) for r in reports if "received" in r)  # type: ignore[arg-type]
    if len(starts) != case.writers or len(ends) != case.readers:
        raise BenchError(
            f"{case.key}: expected {case.writers} writer and {case.readers} reader reports, "
            f"got {len(starts)} and {len(ends)}"
        )
    elapsed_ns = max(ends) - min(starts)  # type: ignore[type-var,operator]
    if elapsed_ns <= 0:
        raise BenchError(f"{case.key}: non-positive elapsed time {elapsed_ns} ns")
    rate = received / (elapsed_ns / 1e9)
    return {
        "msgs_per_s": rate,
        "mb_per_s": rate * case.size / 1e6,
        "messages": float(received),
        "seconds": elapsed_ns / 1e9,
    }


def ratio(value: float, other: float) -> float | None:
    """``value / other``, or None when ``other`` is zero or either is missing/NaN."""
    if other == 0 or math.isnan(value) or math.isnan(other):
        return None
    return value / other
