"""The side-by-side transport comparison as a pytest-benchmark suite.

``test_quick_comparison`` runs ``pykernel bench --quick`` once and stores every number,
ratio and target verdict in the benchmark's ``extra_info`` (``--benchmark-json`` keeps
them). The frame micro-benchmarks show what verification costs each transport per message.
"""

from __future__ import annotations

from pykernel.bench import BenchConfig, run_bench
from pykernel.bench._frames import Framer, Verifier


def test_quick_comparison(record_machine) -> None:  # type: ignore[no-untyped-def]
    report = record_machine.pedantic(
        run_bench, args=(BenchConfig.quick(),), kwargs={"mode": "quick"}, rounds=1, iterations=1
    )
    data = report.to_json()
    record_machine.extra_info.update(
        values=data["values"],
        ratios=data["ratios"],
        targets=data["targets"],
        failures=[r for r in data["results"] if r["status"] != "ok"],
    )
    # Correctness, not speed: every transport that ran must have passed verification.
    assert [r for r in data["results"] if r["status"] != "ok"] == []


def test_frame_64(record_machine) -> None:  # type: ignore[no-untyped-def]
    framer = Framer(64)
    record_machine(framer.frame, 12345)


def test_verify_64(record_machine) -> None:  # type: ignore[no-untyped-def]
    framer, n = Framer(64), 1 << 16
    msgs = [bytes(framer.frame(i)) for i in range(n)]

    def verify_all() -> None:
        v = Verifier(64, 1, n)
        for m in msgs:
            v.check(m)

    record_machine.pedantic(verify_all, rounds=5, iterations=1)
    record_machine.extra_info["messages_per_round"] = n


def test_verify_batch_64(record_machine) -> None:  # type: ignore[no-untyped-def]
    framer, n, k = Framer(64), 1 << 16, 1024
    msgs = [bytes(framer.frame(i)) for i in range(n)]

    def verify_all() -> None:
        v = Verifier(64, 1, n)
        for i in range(0, n, k):
            v.check_many(msgs[i : i + k])

    record_machine.pedantic(verify_all, rounds=5, iterations=1)
    record_machine.extra_info["messages_per_round"] = n


def test_verify_1mib(record_machine) -> None:  # type: ignore[no-untyped-def]
    framer = Framer(1 << 20)
    msg = bytes(framer.frame(0))
    v = Verifier(1 << 20, 1, 1)

    def verify_one() -> None:
        v.next[0] = 0
        v.check(msg)

    record_machine(verify_one)
