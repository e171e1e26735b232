"""The numbers of the comparison are computed right: percentiles, rates, ratios, targets."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pykernel.bench import (
    CASES,
    BenchConfig,
    BenchError,
    CaseResult,
    Report,
    TransportInfo,
    parse_size,
    render,
    render_markdown,
)
from pykernel.bench._harness import merge_rounds
from pykernel.bench._render import fmt_value
from pykernel.bench._report import TARGETS, Target, best_peer, evaluate, ratios, values
from pykernel.bench._stats import percentile, ratio, summarize

CASE = {c.key: c for c in CASES}


class TestPercentile:
    def test_nearest_rank(self) -> None:
        """p50 of 1..100 is 50, p99 is 99, p99.9 is 100 (nearest rank)."""
        xs = list(range(1, 101))
        assert (percentile(xs, 50), percentile(xs, 99), percentile(xs, 99.9)) == (50, 99, 100)

    @given(st.lists(st.integers(0, 10**9), min_size=1, max_size=300), st.floats(0.01, 100))
    def test_is_a_member_and_monotonic(self, xs: list[int], q: float) -> None:
        """A percentile is one of the samples and never above the max."""
        xs.sort()
        p = percentile(xs, q)
        assert p in xs and p <= xs[-1] and percentile(xs, 100) == xs[-1]

    def test_bad_input_is_a_typed_error(self) -> None:
        """No samples, or q outside (0, 100], is refused."""
        with pytest.raises(BenchError, match="percentile of no samples"):
            percentile([], 50)
        with pytest.raises(BenchError, match="percentile 0 is outside"):
            percentile([1], 0)


class TestSummarize:
    def test_round_trip_drops_warm_up_and_converts_to_microseconds(self) -> None:
        """RTT numbers come from the client's samples after the warm-up ones."""
        samples = [10**9] * 5 + [1000 * i for i in range(1, 101)]
        m = summarize(CASE["rtt64"], [{"samples": samples}, {}], warmup=5)
        assert m["p50_us"] == 50.0 and m["p99_us"] == 99.0 and m["p999_us"] == 100.0
        assert m["samples"] == 100 and m["mean_us"] == pytest.approx(50.5)

    def test_throughput_spans_first_writer_start_to_last_reader_end(self) -> None:
        """Fan-in: 4 writers, one reader; rate = delivered / (last end - first start)."""
        writers = [{"t0": 1_000_000_000 + i, "t1": 0, "sent": 250} for i in range(4)]
        reader = {"t0": 0, "t1": 1_500_000_000, "received": 1000}
        m = summarize(CASE["fanin64"], [*writers, reader])
        assert m["seconds"] == pytest.approx(0.5)
        assert m["msgs_per_s"] == pytest.approx(2000.0)
        assert m["mb_per_s"] == pytest.approx(2000.0 * 64 / 1e6)

    def test_fan_out_counts_deliveries_to_every_reader(self) -> None:
        """Fan-out: each of 4 readers' messages counts."""
        reports = [{"t0": 0, "t1": 10**9, "sent": 100}] + [
            {"t0": 0, "t1": 10**9, "received": 100} for _ in range(4)
        ]
        assert summarize(CASE["fanout64"], reports)["msgs_per_s"] == 400.0

    def test_missing_reports_are_a_typed_error(self) -> None:
        """A case without its reader's report cannot be summarised."""
        with pytest.raises(BenchError, match="expected 1 writer and 1 reader reports"):
            summarize(CASE["oneway64"], [{"t0": 0, "t1": 1, "sent": 1}])
        with pytest.raises(BenchError, match="expected one client report, got 0"):
            summarize(CASE["rtt64"], [{}])

    def test_ratio_of_zero_is_none(self) -> None:
        """Dividing by a zero reference gives no ratio rather than a crash."""
        assert ratio(1.0, 0.0) is None and ratio(3.0, 2.0) == 1.5


def vals() -> dict[str, dict[str, float]]:
    return {
        "pykernel": {
            "rtt64.p50_us": 3.0,
            "rtt64.p999_us": 30.0,
            "oneway64.msgs_per_s": 900e3,
            "fanout64.msgs_per_s": 700e3,
            "fanin64.msgs_per_s": 500e3,
        },
        "pykernel-batch": {"oneway64.msgs_per_s": 12e6, "fanin64.msgs_per_s": 800e3},
        "pykernel-zc": {"oneway1m.msgs_per_s": 20e3},
        "mp-pipe": {"rtt64.p50_us": 20.0, "rtt64.p999_us": 50.0, "oneway64.msgs_per_s": 300e3},
        "iceoryx2": {
            "rtt64.p50_us": 12.0,
            "rtt64.p999_us": 90.0,
            "oneway64.msgs_per_s": 200e3,
            "oneway1m.msgs_per_s": 25e3,
        },
        "zmq-pubsub": {"fanout64.msgs_per_s": 300e3},
        "zmq-pushpull": {"fanin64.msgs_per_s": 300e3},
    }


PEERS = ["mp-pipe", "iceoryx2", "zmq-pubsub", "zmq-pushpull"]


class TestRatios:
    def test_best_peer_is_min_for_latency_and_max_for_rates(self) -> None:
        """Latency: the lowest peer wins; throughput: the highest."""
        assert best_peer(vals(), PEERS, "rtt64.p50_us") == ("iceoryx2", 12.0)
        assert best_peer(vals(), PEERS, "rtt64.p999_us") == ("mp-pipe", 50.0)
        assert best_peer(vals(), PEERS, "oneway64.msgs_per_s") == ("mp-pipe", 300e3)
        assert best_peer(vals(), PEERS, "fanin64.msgs_per_s") == ("zmq-pushpull", 300e3)

    def test_ratio_to_each_peer_and_to_the_best(self) -> None:
        """Every ratio is pykernel divided by the peer."""
        r = ratios(vals(), ["pykernel"], PEERS)["pykernel"]
        assert r["rtt64.p50_us"]["mp-pipe"] == pytest.approx(0.15)
        assert r["rtt64.p50_us"]["iceoryx2"] == pytest.approx(0.25)
        assert r["rtt64.p50_us"]["best_peer"] == "iceoryx2"
        assert r["rtt64.p50_us"]["vs_best"] == pytest.approx(0.25)
        assert r["oneway64.msgs_per_s"]["vs_best"] == pytest.approx(3.0)

    def test_targets_are_decided_against_the_named_reference(self) -> None:
        """Each target uses its variant and reference; the best variant counts."""
        got = {t.metric + t.variants[0]: evaluate(t, vals(), PEERS) for t in TARGETS}
        p50 = got["rtt64.p50_uspykernel"]
        assert p50["met"] is True and p50["versus"] == "iceoryx2" and p50["ratio"] == 0.25
        p999 = got["rtt64.p999_uspykernel"]
        assert p999["met"] is False and p999["ratio"] == pytest.approx(0.6)
        assert got["oneway64.msgs_per_spykernel"]["met"] is True  # 3.0x >= 1.3x
        assert got["oneway64.msgs_per_spykernel-batch"]["met"] is True  # 12M >= 10M
        zc = got["oneway1m.msgs_per_spykernel-zc"]
        assert zc["met"] is False and zc["ratio"] == pytest.approx(0.8)
        fanin = got["fanin64.msgs_per_spykernel"]
        assert fanin["pykernel"] == "pykernel-batch" and fanin["ratio"] == pytest.approx(8 / 3)

    def test_p999_target_fails_when_above_half(self) -> None:
        """30 µs against a best peer of 50 µs is 0.6x: not at most 0.5x."""
        t = Target("p99.9", "rtt64.p999_us", ("pykernel",), "best", 0.5)
        out = evaluate(t, vals(), PEERS)
        assert out["met"] is False and out["ratio"] == pytest.approx(0.6)

    def test_missing_numbers_make_a_target_undecided(self) -> None:
        """No pykernel number, or no reference number, gives met=None with a reason."""
        t = Target("x", "oneway4k.msgs_per_s", ("pykernel",), "best", 1.0)
        assert evaluate(t, vals(), PEERS)["met"] is None
        t2 = Target("y", "oneway64.msgs_per_s", ("pykernel",), "faster-fifo", 1.0)
        out = evaluate(t2, vals(), PEERS)
        assert out["met"] is None and "faster-fifo" in out["why"]


def report() -> Report:
    results = (
        CaseResult("pykernel", "oneway64", "ok", {"msgs_per_s": 900e3, "mb_per_s": 57.6}),
        CaseResult("mp-pipe", "oneway64", "ok", {"msgs_per_s": 300e3, "mb_per_s": 19.2}),
        CaseResult("mp-pipe", "rtt64", "timeout", {}, "no result within the case timeout"),
    )
    infos = (
        TransportInfo("pykernel", "pykernel", "blocking", "0.1.0", "ok", True),
        TransportInfo("mp-pipe", "multiprocessing.Pipe", "blocking", "stdlib", "ok", False),
        TransportInfo("ghost", "ghost-ipc", "blocking", "unknown", "not installed", False),
    )
    machine = {
        "cpu_model": "Test CPU",
        "cores_usable": 2,
        "cores_online": 2,
        "kernel": "6.1",
        "python": "3.11.7",
    }
    return Report(machine, {"mode": "quick"}, infos, results)


class TestReportOutput:
    def test_json_has_raw_numbers_ratios_targets_machine(self) -> None:
        """The JSON form carries everything a script needs."""
        data = report().to_json()
        assert set(data) == {
            "machine",
            "config",
            "metrics",
            "transports",
            "results",
            "values",
            "ratios",
            "targets",
        }
        heading = {"key": "rtt64.p50_us", "heading": "RTT p50 µs", "lower_is_better": True}
        assert heading in data["metrics"]
        assert data["values"]["pykernel"]["oneway64.msgs_per_s"] == 900e3
        assert data["ratios"]["pykernel"]["oneway64.msgs_per_s"]["mp-pipe"] == 3.0
        assert len(data["targets"]) == len(TARGETS)
        assert values(list(report().results)) == data["values"]

    def test_table_shows_values_failures_and_missing_peers(self) -> None:
        """The text form has a row per transport, TIMEOUT cells, and why a row is empty."""
        text = render(report().to_json())
        assert "Test CPU, 2/2 cores, Linux 6.1, Python 3.11.7" in text
        assert "ghost-ipc" in text and "not installed" in text
        row = next(line for line in text.splitlines() if line.startswith("multiprocessing.Pipe"))
        assert "TIMEOUT" in row and "300k" in row
        assert "mp-pipe rtt64: timeout: no result within the case timeout" in text
        assert "64B msg/s 3.00x (mp-pipe)" in text
        assert "[met]     64 B one per call at least 1.3x the best peer" in text

    def test_markdown_table_for_the_readme(self) -> None:
        """--markdown gives a pipe table with one row per transport and the verdicts."""
        text = render_markdown(report().to_json())
        lines = text.splitlines()
        assert lines[0].startswith("Test CPU, 2 usable of 2 cores, Linux 6.1, Python 3.11.7")
        assert "| multiprocessing.Pipe | blocking | TIMEOUT | TIMEOUT | TIMEOUT | 300k |" in text
        assert "| ghost-ipc | blocking | not installed |" in text
        assert "| 64 B one per call at least 1.3x the best peer | met | pykernel 900k" in text
        assert "- mp-pipe rtt64: timeout: no result within the case timeout" in text


class TestFormatting:
    @pytest.mark.parametrize(
        ("value", "text"),
        [
            (950.0, "950"),
            (1234.0, "1.2k"),
            (9_960.0, "10k"),
            (999_600.0, "1.00M"),
            (12_345_678.0, "12.35M"),
        ],
    )
    def test_rates_round_without_carry_artifacts(self, value: float, text: str) -> None:
        """Rates get k/M suffixes and never show 10.0k or 1000k."""
        assert fmt_value(value, lower_is_better=False) == text

    def test_latencies_keep_significant_digits(self) -> None:
        """Microseconds: two decimals under 10, one under 1000, none above."""
        assert [fmt_value(v, True) for v in (3.456, 45.67, 4567.8)] == ["3.46", "45.7", "4568"]


class TestOptions:
    @pytest.mark.parametrize(
        ("text", "size"),
        [("64", 64), ("4k", 4096), ("4KiB", 4096), ("1MiB", 1 << 20), ("1m", 1 << 20)],
    )
    def test_sizes_parse(self, text: str, size: int) -> None:
        """Sizes accept bytes, k/KiB and m/MiB."""
        assert parse_size(text) == size

    @given(
        st.text(max_size=8).filter(lambda s: not s.strip().rstrip("bBiI").rstrip("kKmM").isdigit())
    )
    def test_bad_sizes_are_named(self, text: str) -> None:
        """Anything else is refused with the bad value in the message."""
        with pytest.raises(BenchError, match="--sizes: cannot read size"):
            parse_size(text)

    def test_config_rejects_nonsense(self) -> None:
        """Counts, depths and timeouts are checked and named."""
        with pytest.raises(BenchError, match="depth must be >= 1, not 0"):
            BenchConfig(depth=0)
        with pytest.raises(BenchError, match="timeout must be > 0"):
            BenchConfig(timeout=0)
        with pytest.raises(BenchError, match="counts has unknown case 'nope'"):
            BenchConfig(counts={"nope": 1})
        with pytest.raises(BenchError, match=r"counts\['oneway64'\] must be >= 1, not 0"):
            BenchConfig(counts={"oneway64": 0})
        with pytest.raises(BenchError, match="repeat must be >= 1, not 0"):
            BenchConfig(repeat=0)
        with pytest.raises(BenchError, match="min_seconds must be >= 0, not -1"):
            BenchConfig(min_seconds=-1)

    def test_depth_flag_reaches_the_config_and_the_table(self, capsys) -> None:
        """--depth sets every choosable queue depth; the table header names it; 0 is refused."""
        from pykernel.cli import main

        assert main(["bench", "--depth", "0"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "depth must be >= 1, not 0" in err
        assert main(["bench", "--quick", "--depth", "1024", "--sizes", "64", "--peers",
                     "mp-pipe", "--json"]) == 0
        data = json.loads(capsys.readouterr().out)
        assert data["config"]["depth"] == 1024
        assert "queue depth 1024 messages" in render(data)


class TestRounds:
    def test_median_per_metric_over_rounds(self) -> None:
        """Repeated runs report the median of each metric and how many rounds ran."""
        rounds = [
            CaseResult("t", "oneway64", "ok", {"msgs_per_s": v, "seconds": 1.0}, None, 2.0)
            for v in (5.0, 1.0, 3.0)
        ]
        merged = merge_rounds(rounds)
        assert merged.metrics == {"msgs_per_s": 3.0, "seconds": 1.0, "rounds": 3.0}
        assert merged.status == "ok" and merged.seconds == 6.0

    def test_any_failed_round_fails_the_case(self) -> None:
        """A verification failure in one round is never averaged away."""
        ok = CaseResult("t", "oneway64", "ok", {"msgs_per_s": 1.0})
        bad = CaseResult("t", "oneway64", "failed", {}, "reader 0: VerifyError: gap")
        merged = merge_rounds([ok, bad, ok])
        assert merged.status == "failed" and merged.error == "reader 0: VerifyError: gap"
