"""The comparison harness: real child processes, every message verified, failures reported.

Tiny message counts keep each case well under a second.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest

from pykernel._cli_bench import register
from pykernel._errors import UsageError
from pykernel.bench import CASES, BenchConfig, BenchError, Transport, render, run_bench, run_case
from pykernel.bench._cases import Case
from pykernel.bench._errors import VerifyError
from pykernel.bench._frames import Framer, Verifier
from pykernel.bench._harness import MAX_SCALE, measure, roles_for
from pykernel.bench._peers_std import MpPipe, OsPipe, _FdLink, _FdReceiver
from pykernel.bench._pykernel import (
    PykernelBatch,
    PykernelPacked,
    PykernelPerCall,
    PykernelZeroCopy,
)
from pykernel.bench._transport import Channel, Receiver, Sender
from pykernel.cli import _Parser

CASE = {c.key: c for c in CASES}
TINY = BenchConfig(
    min_seconds=0,
    rtt_samples=200,
    rtt_warmup=20,
    timeout=15.0,
    counts={"oneway64": 500, "oneway4k": 200, "oneway1m": 8, "fanout64": 200, "fanin64": 200},
)


def _leftovers() -> set[str]:
    # Only this process's names (the harness tags segments with the parent's pid), so a
    # benchmark running beside the tests on the same host is not taken for our leak.
    pid = os.getpid()
    mine = (f"pkb.{pid}.", f"pykernel.pkb.{pid}.", f"pkb{pid}x")
    tmp = tempfile.gettempdir()
    found = {f"/dev/shm/{n}" for n in os.listdir("/dev/shm") if n.startswith(mine)}
    return found | {f"{tmp}/{n}" for n in os.listdir(tmp) if n.startswith("pykernel-bench-")}


@pytest.fixture(autouse=True)
def no_leaks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test leaves no child process, shm segment or temp dir behind."""
    # Temp dirs go to a directory of this test's own (forked children inherit it), for the
    # same reason: another run's temp dirs on the host are not ours. Kept short: zmq's ipc
    # paths must fit in sockaddr_un (107 bytes).
    own = tempfile.mkdtemp(prefix="pkbt-")
    monkeypatch.setattr(tempfile, "tempdir", own)
    monkeypatch.setenv("TMPDIR", own)
    try:
        before = _leftovers()
        yield
        assert multiprocessing.active_children() == []
        assert _leftovers() - before == set()
    finally:
        shutil.rmtree(own, ignore_errors=True)


class _FlippingReceiver(_FdReceiver):
    """Damages one byte of message 3, as a buggy transport would."""

    def recv(self):  # type: ignore[no-untyped-def]
        view = super().recv()
        if struct.unpack_from("<Q", view)[0] == 3:
            view[20] ^= 0xFF
        return view


class _FlippingLink(_FdLink):
    def wrap_receiver(self, queue: tuple[int, int]) -> Receiver:
        return _FlippingReceiver(queue[0], self.channel.size)


class Corrupting(OsPipe):
    key = "corrupting"
    label = "corrupting pipe"
    link = _FlippingLink


class _LateReceiver(_FdReceiver):
    """Starts reading 50 ms late, as a loaded machine would."""

    started = False

    def recv(self):  # type: ignore[no-untyped-def]
        if not self.started:
            time.sleep(0.05)
            self.started = True
        return super().recv()


class _LateLink(_FdLink):
    def wrap_receiver(self, queue: tuple[int, int]) -> Receiver:
        return _LateReceiver(queue[0], self.channel.size)


class LateStart(OsPipe):
    key = "late"
    label = "late-reading pipe"
    link = _LateLink


class _Stuck(Receiver):
    def recv(self):  # type: ignore[no-untyped-def]
        time.sleep(3600)


class _StuckLink(_FdLink):
    def wrap_receiver(self, queue: tuple[int, int]) -> Receiver:
        return _Stuck()


class Hanging(OsPipe):
    key = "hanging"
    label = "hanging pipe"
    link = _StuckLink


class _DyingSender(Sender):
    def send(self, frame: bytearray) -> None:
        os._exit(9)


class _DyingLink(_FdLink):
    def wrap_sender(self, queue: tuple[int, int]) -> Sender:
        return _DyingSender()


class Dying(OsPipe):
    key = "dying"
    label = "dying pipe"
    link = _DyingLink


class Unbuildable(OsPipe):
    key = "unbuildable"
    label = "unbuildable"

    def open(self, channel: Channel):  # type: ignore[no-untyped-def]
        raise OSError(24, "Too many open files")


class Absent(Transport):
    key = "absent"
    label = "absent-ipc"
    module = "no_such_module_for_pykernel_bench"
    cases = frozenset({"oneway64"})


class TestPinning:
    def test_two_sides_on_different_cores(self) -> None:
        """The lone side gets the first core, the other side the rest."""
        pins = {r.name: r.cpu for r in roles_for(CASE["rtt64"], [0, 1])}
        assert pins == {"client": 0, "echo": 1}
        fanin = {r.name: r.cpu for r in roles_for(CASE["fanin64"], [2, 5])}
        assert fanin == {"reader 0": 2, "writer 0": 5, "writer 1": 5, "writer 2": 5, "writer 3": 5}

    def test_fan_out_readers_spread_over_the_other_cores(self) -> None:
        """With three cores the four readers alternate over the two the writer leaves."""
        pins = [r.cpu for r in roles_for(CASE["fanout64"], [0, 1, 2])]
        assert pins == [0, 1, 2, 1, 2]

    def test_no_pinning_on_one_core(self) -> None:
        """A single usable core (or pin=False) pins nothing."""
        assert {r.cpu for r in roles_for(CASE["oneway64"], [3])} == {None}
        assert {r.cpu for r in roles_for(CASE["oneway64"], None)} == {None}


class TestRunCase:
    @pytest.mark.parametrize("key", ["rtt64", "oneway64", "oneway1m", "fanout64", "fanin64"])
    def test_os_pipe_runs_every_shape_and_verifies_every_message(self, key: str) -> None:
        """A correct transport gives numbers for ping-pong, 1:1, fan-out and fan-in."""
        r = run_case(OsPipe(), CASE[key], TINY)
        assert r.status == "ok", r.error
        if key == "rtt64":
            assert r.metrics["samples"] == 200
            assert 0 < r.metrics["p50_us"] <= r.metrics["p99_us"] <= r.metrics["p999_us"]
        else:
            fan = CASE[key].fan
            assert r.metrics["messages"] == TINY.count(CASE[key]) * fan
            assert r.metrics["msgs_per_s"] > 0

    def test_queue_and_pipe_peers_run(self) -> None:
        """The multiprocessing peers pass the fan-in case (shared queue, pipe per writer)."""
        from pykernel.bench._peers_std import MpQueue

        for t in (MpQueue(), MpPipe()):
            r = run_case(t, CASE["fanin64"], TINY)
            assert r.status == "ok", r.error

    def test_late_reader_with_frames_bigger_than_the_pipe_does_not_deadlock(self) -> None:
        """One warm-up frame only: a second 1 MiB one would block a 64 KiB pipe forever."""
        r = run_case(LateStart(), CASE["oneway1m"], TINY)
        assert r.status == "ok", r.error

    def test_pub_sub_fan_out_loses_nothing(self) -> None:
        """PUB/SUB's slow joiner is handled by repeated warm-up frames: all 4 get all."""
        from pykernel.bench._peers_ext import ZmqPubSub

        r = run_case(ZmqPubSub(), CASE["fanout64"], TINY)
        assert r.status == "ok", r.error
        assert r.metrics["messages"] == 4 * TINY.count(CASE["fanout64"])

    def test_corrupted_message_fails_the_case_with_the_reason(self) -> None:
        """A damaged byte is caught on receive and named (writer, message, offset)."""
        r = run_case(Corrupting(), CASE["oneway64"], TINY)
        assert r.status == "failed"
        assert "reader 0: VerifyError: writer 0 message 3: body differs at byte 20" in r.error

    def test_corrupted_echo_fails_the_round_trip_case(self) -> None:
        """Round trips compare each echo whole; a damaged one still fails with the reason."""
        r = run_case(Corrupting(), CASE["rtt64"], TINY)
        assert r.status == "failed"
        assert "VerifyError: writer 0 message 3: body differs at byte 20" in r.error

    def test_hung_transport_is_killed_at_the_deadline(self) -> None:
        """A receiver that never returns is killed and reported as a timeout."""
        config = BenchConfig(counts={"oneway64": 10}, timeout=1.5)
        began = time.monotonic()
        r = run_case(Hanging(), CASE["oneway64"], config)
        assert r.status == "timeout"
        assert "no result within the case timeout from: " in r.error
        assert "reader 0 (stuck in recv test_bench_harness.py" in r.error
        assert time.monotonic() - began < 1.5 + 4

    def test_child_that_dies_is_reported(self) -> None:
        """A child exiting without a report fails the case with its exit code."""
        r = run_case(Dying(), CASE["oneway64"], TINY)
        assert r.status == "failed"
        assert r.error is not None and "exited with code 9 without a result" in r.error

    def test_setup_error_is_reported_not_raised(self) -> None:
        """A transport that cannot even open its channel fails only its own case."""
        r = run_case(Unbuildable(), CASE["oneway64"], TINY)
        assert r.status == "failed"
        assert r.error == "setup: OSError: [Errno 24] Too many open files"

    def test_os_pipe_fan_in_refuses_messages_above_pipe_buf(self) -> None:
        """Shared-pipe fan-in is only atomic up to PIPE_BUF; bigger is refused up front."""
        big = Case("fanin1m", "fanin", 1 << 20, fan=2)
        r = run_case(OsPipe(), big, TINY)
        assert r.status == "failed" and "needs messages <= PIPE_BUF" in r.error


class TestPykernelRows:
    @pytest.mark.parametrize(
        ("variant", "key"),
        [
            (t.key, key)
            for t in (PykernelPerCall(), PykernelBatch(), PykernelPacked(), PykernelZeroCopy())
            for key in sorted(t.cases)
        ],
    )
    def test_every_pykernel_variant_passes_verification(self, variant: str, key: str) -> None:
        """Per-call, batched and zero-copy rows deliver every message intact, all shapes."""
        row = {
            t.key: t
            for t in (PykernelPerCall(), PykernelBatch(), PykernelPacked(), PykernelZeroCopy())
        }
        r = run_case(row[variant], CASE[key], TINY)
        assert r.status == "ok", r.error
        if key != "rtt64":
            assert r.metrics["messages"] == TINY.count(CASE[key]) * CASE[key].fan

    def test_batch_row_wraps_the_ring_many_times(self) -> None:
        """A scaled batch run sends 40 rings' worth of messages, every one verified."""
        config = BenchConfig(counts={"oneway64": 256}, timeout=15.0)
        r = run_case(PykernelBatch(), CASE["oneway64"], config, scale=40)
        assert r.status == "ok", r.error
        assert r.metrics["messages"] == 256 * 40


class TestMeasure:
    def test_a_too_short_run_is_rerun_longer(self) -> None:
        """Under min_seconds, the case runs again with more messages (capped), and counts."""
        config = BenchConfig(counts={"oneway64": 50}, timeout=15.0, min_seconds=0.05)
        r = measure(OsPipe(), CASE["oneway64"], config)
        assert r.status == "ok", r.error
        assert 50 < r.metrics["messages"] <= 50 * MAX_SCALE

    def test_long_enough_or_latency_cases_run_once(self) -> None:
        """min_seconds=0 keeps the first run; ping-pong is sample-based, never scaled."""
        config = BenchConfig(counts={"oneway64": 50}, timeout=15.0, min_seconds=0)
        assert measure(OsPipe(), CASE["oneway64"], config).metrics["messages"] == 50
        rtt = BenchConfig(rtt_samples=50, rtt_warmup=5, timeout=15.0, min_seconds=100)
        assert measure(OsPipe(), CASE["rtt64"], rtt).metrics["samples"] == 50


class TestRunBench:
    def test_failing_and_missing_transports_do_not_stop_the_run(self) -> None:
        """Broken rows are reported; the working row still gets its numbers."""
        report = run_bench(
            TINY, transports=[OsPipe(), Corrupting(), Absent()], sizes=[64], mode="test"
        )
        data = report.to_json()
        status = {t["key"]: t["status"] for t in data["transports"]}
        assert status == {"os-pipe": "ok", "corrupting": "ok", "absent": "not installed"}
        by = {(r["transport"], r["case"]): r["status"] for r in data["results"]}
        assert by[("os-pipe", "oneway64")] == "ok" and by[("corrupting", "oneway64")] == "failed"
        assert ("os-pipe", "oneway1m") not in by  # --sizes 64 keeps only 64 B cases
        text = render(data)
        assert "absent-ipc" in text and "not installed" in text
        assert "corrupting oneway64: failed:" in text

    def test_unknown_peer_and_size_are_named(self) -> None:
        """Typos in --peers or --sizes are typed errors listing what exists."""
        with pytest.raises(BenchError, match=r"--peers: unknown nope; known: .*os-pipe"):
            run_bench(TINY, transports=[OsPipe()], peers=["nope"])
        with pytest.raises(BenchError, match=r"--sizes: no case uses \[100\] bytes"):
            run_bench(TINY, transports=[OsPipe()], sizes=[100])

    def test_peers_filter_marks_the_others_excluded(self) -> None:
        """Rows left out by --peers are listed as excluded, not silently dropped."""
        data = run_bench(
            TINY, transports=[OsPipe(), MpPipe()], peers=["mp-pipe"], sizes=[4096]
        ).to_json()
        status = {t["key"]: t["status"] for t in data["transports"]}
        assert status == {"os-pipe": "excluded", "mp-pipe": "ok"}


class TestCli:
    def _run(self, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
        parser = _Parser(prog="pykernel")
        register(parser.add_subparsers(dest="verb", parser_class=_Parser))
        args = parser.parse_args(argv)
        code = args.func(args)
        return code, capsys.readouterr().out

    def test_json_shape(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--json prints machine info, raw results, values, ratios and targets."""
        code, out = self._run(
            ["bench", "--quick", "--json", "--peers", "os-pipe", "--sizes", "4KiB"], capsys
        )
        data = json.loads(out)
        assert code == 0
        assert {
            "cpu_model",
            "cores_online",
            "cores_usable",
            "kernel",
            "python",
            "load_before",
            "load_after",
        } <= set(data["machine"])
        assert data["config"]["mode"] == "quick" and data["config"]["cases"] == ["oneway4k"]
        row = next(r for r in data["results"] if r["transport"] == "os-pipe")
        assert row["status"] == "ok" and row["metrics"]["messages"] % 5000 == 0
        assert data["values"]["os-pipe"]["oneway4k.mb_per_s"] > 0
        assert all({"target", "met", "metric"} <= set(t) for t in data["targets"])

    def test_bad_size_is_a_usage_style_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A bad --sizes value leaves as a typed error before anything runs."""
        with pytest.raises(BenchError, match="cannot read size 'huge'"):
            self._run(["bench", "--sizes", "huge"], capsys)

    def test_pykernel_command_prints_one_line_and_exits_2(self) -> None:
        """Through the real `pykernel` entry point: bad --peers is one line, exit 2."""
        proc = subprocess.run(
            [sys.executable, "-m", "pykernel", "bench", "--peers", "os-pipe,nope"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 2 and proc.stdout == ""
        assert proc.stderr.splitlines() == [
            "pykernel: --peers: unknown nope; known: faster-fifo, iceoryx2, mp-pipe, mp-queue, "
            "os-pipe, zmq-pair, zmq-pubsub, zmq-pushpull"
        ]

    def test_unknown_flag_is_a_usage_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        """argparse errors are typed (UsageError), so the CLI prints one line."""
        with pytest.raises(UsageError, match="unrecognized arguments: --fast"):
            self._run(["bench", "--fast"], capsys)


class _ListReceiver(Receiver):
    """Hands out prepared frames; counts which path the timed loop used."""

    def __init__(self, msgs: list[bytes]) -> None:
        self._it = iter(msgs)
        self.recv_calls = 0
        self.direct_calls = 0

    def recv(self) -> bytes:
        self.recv_calls += 1
        return next(self._it)

    def recv_call(self):  # type: ignore[no-untyped-def]
        def direct() -> bytes:
            self.direct_calls += 1
            return next(self._it)

        return direct


class _InPlaceReceiver(_ListReceiver):
    def take(self, check):  # type: ignore[no-untyped-def]
        return check(self.recv())


class TestReceiveLoop:
    def test_default_loop_calls_the_library_call_directly(self) -> None:
        """recv_stream reads through recv_call (no adapter frame) and verifies each message."""
        f = Framer(64)
        r = _ListReceiver([bytes(f.warm())] + [bytes(f.frame(i)) for i in range(5)])
        v = Verifier(64, 1, 5)
        r.recv_stream(v)
        v.finish()
        assert (r.direct_calls, r.recv_calls) == (6, 0)

    def test_a_receiver_that_reads_in_place_keeps_its_take(self) -> None:
        """A transport overriding take (zero-copy views) is still read through take."""
        f = Framer(64)
        r = _InPlaceReceiver([bytes(f.frame(i)) for i in range(4)])
        v = Verifier(64, 1, 4)
        r.recv_stream(v)
        assert (r.direct_calls, r.recv_calls) == (0, 4)

    def test_damage_found_on_the_direct_path(self) -> None:
        """A damaged frame read through recv_call fails with the precise error."""
        f = Framer(64)
        bad = bytearray(f.frame(1))
        bad[30] ^= 1
        r = _ListReceiver([bytes(f.frame(0)), bytes(bad)])
        with pytest.raises(VerifyError, match="writer 0 message 1: body differs at byte 30"):
            r.recv_stream(Verifier(64, 1, 2))


class _ListSender(Sender):
    """Collects what the timed loop sends, and through which path."""

    def __init__(self, wants_bytes: bool) -> None:
        self.wants_bytes = wants_bytes
        self.sent: list[object] = []

    def send(self, frame: bytearray) -> None:
        raise AssertionError("the timed loop must use send_call")

    def send_call(self):  # type: ignore[no-untyped-def]
        return self.sent.append


class TestSendLoop:
    @pytest.mark.parametrize("wants_bytes", [True, False])
    def test_loop_sends_every_frame_in_the_asked_form(self, wants_bytes: bool) -> None:
        """send_stream sends frames 0..n-1 through send_call, as new bytes when asked."""
        s = _ListSender(wants_bytes)
        s.send_stream(Framer(64, 2), 3)
        want = [bytes(Framer(64, 2).frame(i)) for i in range(3)]
        if wants_bytes:
            assert s.sent == want
            assert all(type(m) is bytes for m in s.sent)
        else:  # the one reused buffer, holding the last frame
            assert [bytes(m) for m in s.sent] == [want[2]] * 3  # type: ignore[arg-type]


class TestEchoWaiter:
    def test_echoes_are_compared_whole_on_the_direct_path(self) -> None:
        """A leftover warm-up frame is skipped; each echo is counted once, by one compare."""
        from pykernel.bench._child import _echo_waiter

        f = Framer(64)
        frames = [f.frame_bytes(i) for i in range(3)]
        r = _ListReceiver([bytes(f.warm()), *frames])
        v = Verifier(64, 1, 3)
        wait = _echo_waiter(r, v)
        for seq, want in enumerate(frames):
            wait(seq, want)
        v.finish()
        assert (r.direct_calls, r.recv_calls, v.received) == (4, 0, 3)

    def test_a_wrong_echo_takes_the_full_check(self) -> None:
        """An echo other than the frame sent is named by the full check."""
        from pykernel.bench._child import _echo_waiter

        f = Framer(64)
        r = _ListReceiver([f.frame_bytes(1)])
        with pytest.raises(VerifyError, match="got message 1, expected 0: gap"):
            _echo_waiter(r, Verifier(64, 1, 2))(0, f.frame_bytes(0))

    def test_count_exact_only_for_the_next_message_of_one_writer(self) -> None:
        """count_exact refuses a sequence out of turn, many writers and beyond the count."""
        v = Verifier(64, 1, 2)
        with pytest.raises(VerifyError, match="message 1 of one writer is not expected next"):
            v.count_exact(1)
        v.count_exact(0)
        v.count_exact(1)
        with pytest.raises(VerifyError, match="message 2 of one writer is not expected next"):
            v.count_exact(2)
        with pytest.raises(VerifyError, match="message 0 of one writer is not expected next"):
            Verifier(64, 2, 1).count_exact(0)
