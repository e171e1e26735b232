"""Live flow from real pipes: counters, rates, flow states, a sampler that disturbs nothing."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_surface_kit import PipeActions, plan_of

from control.state import SystemState
from control.state_flow import FlowSampler, _behind, counters_of
from pykernel import Pipe


def _name(tag: str) -> str:
    return f"sflow.{os.getpid()}.{tag}"


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[PipeActions]:
    """The test system booted with real pipes and one process per server."""
    plan = plan_of(tmp_path)
    state = SystemState.from_plan(plan)
    actions = PipeActions(state, plan, period=0.002)
    try:
        yield actions.boot()
    finally:
        actions.close()


def _until(cond: Callable[[], bool], sampler: FlowSampler, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        sampler.sample()
        time.sleep(0.05)


def _by_target(state: SystemState) -> dict[str, dict]:
    return {c["source"] + "->" + c["target"]: c for c in state.connections_json()}


class TestCounters:
    """counters_of reads a real PipeStats."""

    def test_multiplexer_counters(self) -> None:
        """Published messages/bytes, fill, per-reader consumed and backlog."""
        with Pipe.create(_name("m"), slot_size=64, slots=8, shape="multiplexer",
                         max_readers=4) as pipe:
            try:
                fast, slow, w = pipe.reader(), pipe.reader(), pipe.writer()
                for _ in range(5):
                    w.send(b"x" * 10)
                for _ in range(4):
                    fast.recv(timeout=1)
                pc = counters_of(pipe.stats())
                assert (pc.messages, pc.bytes) == (5, 50)
                assert pc.fill == 5 / 8
                mine = [r for r in pc.readers if r.pid]
                assert sorted((r.messages, r.backlog) for r in mine) == [(0, 5), (4, 1)]
                assert slow is not None
            finally:
                Pipe.unlink(pipe.name)

    def test_backlog_across_the_sequence_wrap(self) -> None:
        """A backlog is counted modulo 2^64; a reader seen slightly ahead has none."""
        assert _behind(3, 2**64 - 2) == 5
        assert _behind(2**64 - 1, 2**64 - 4) == 3
        assert _behind(10, 12) == 0


class TestSampler:
    """The sampler turns pipe counters into per-connection flow and states."""

    def test_flowing_with_rates(self, kernel: PipeActions) -> None:
        """Every connection flows; each fan-out reader has its own count."""
        sampler = FlowSampler(kernel.state, interval=0.1, quiet_after=0.3)
        _until(lambda: all(c["state"] == "flowing" for c in kernel.state.connections_json()),
               sampler)
        # Rates need two samples an interval apart on every connection: wait for them with
        # a deadline, not a fixed sleep a loaded machine may outlast.
        _until(lambda: all(c["flow"]["msgs_per_s"] > 0 and c["flow"]["bytes_per_s"] > 0
                           for c in kernel.state.connections_json()), sampler)
        conns = _by_target(kernel.state)
        for c in conns.values():
            assert c["flow"]["bytes"] == 32 * c["flow"]["messages"]
        pipes = {p["name"]: p for p in kernel.state.pipes_json()}
        assert len(pipes["t.src.out"]["stats"]["readers"]) == 2
        assert len(pipes["t.sink.inp"]["stats"]["writers"]) == 2

    def test_stalled_reader_then_recovers(self, kernel: PipeActions) -> None:
        """A frozen reader: its connection stalls, its sibling goes idle; then both flow."""
        sampler = FlowSampler(kernel.state, interval=0.1, quiet_after=0.3)
        _until(lambda: _by_target(kernel.state)["src.out->a.inp"]["state"] == "flowing",
               sampler)
        proc = kernel.procs["a"][0]
        proc.send_signal(signal.SIGSTOP)
        try:
            _until(lambda: _by_target(kernel.state)["src.out->a.inp"]["state"] == "stalled",
                   sampler)
            # Lossless fan-out: the frozen reader holds back the writer, b runs dry.
            _until(lambda: _by_target(kernel.state)["src.out->b.inp"]["state"] == "open",
                   sampler)
            a = _by_target(kernel.state)["src.out->a.inp"]
            assert a["flow"]["fill_pct"] > 90 and a["flow"]["writer_waits"] > 0
        finally:
            proc.send_signal(signal.SIGCONT)
        _until(lambda: _by_target(kernel.state)["src.out->a.inp"]["state"] == "flowing",
               sampler)
        causes = [e["cause"] for e in kernel.state.events_json()
                  if e["to"] == "stalled"]
        assert causes and "waiting, none moved" in causes[0]

    def test_stopped_server_breaks_and_idles(self, kernel: PipeActions) -> None:
        """Stopping a: its connections break, stay broken and show no flow of b's."""
        sampler = FlowSampler(kernel.state, interval=0.1, quiet_after=0.3)
        _until(lambda: all(c["state"] == "flowing" for c in kernel.state.connections_json()),
               sampler)
        kernel.stop_server("a")
        for _ in range(5):
            sampler.sample()
            time.sleep(0.05)
        conns = _by_target(kernel.state)
        assert conns["src.out->a.inp"]["state"] == "broken"
        assert conns["a.res->sink.inp"]["state"] == "broken"
        assert conns["b.res->sink.inp"]["state"] == "flowing"
        # The shared pipes still flow for b; none of it is counted for a's connections.
        for key in ("src.out->a.inp", "a.res->sink.inp"):
            assert conns[key]["flow"]["msgs_per_s"] == 0, conns[key]
        assert conns["b.res->sink.inp"]["flow"]["msgs_per_s"] > 0

    def test_thread_runs_and_stops(self, kernel: PipeActions) -> None:
        """start() samples on its own; stop() ends the thread and closes its handles."""
        with FlowSampler(kernel.state, interval=0.05) as sampler:
            deadline = time.monotonic() + 5
            while sampler.rounds < 3:
                assert time.monotonic() < deadline
                time.sleep(0.02)
        rounds = sampler.rounds
        time.sleep(0.15)
        assert sampler.rounds == rounds and sampler._handles == {}

    def test_missing_pipe_is_skipped(self, tmp_path: Path) -> None:
        """Pipes not created yet are skipped; the round still completes."""
        state = SystemState.from_plan(plan_of(tmp_path))
        sampler = FlowSampler(state)
        sampler.sample()
        assert sampler.rounds == 1
        assert {c["state"] for c in state.connections_json()} == {"planned"}


class TestNoDisturbance:
    """Sampling never disturbs the data path."""

    def test_every_message_arrives_in_order(self) -> None:
        """20,000 numbered messages pass while the pipe is sampled as fast as possible."""
        name = _name("d")
        count = 20_000
        with Pipe.create(name, slot_size=16, slots=64) as pipe:
            try:
                reader, writer = pipe.reader(), pipe.writer()
                got: list[int] = []
                stop = threading.Event()
                samples = [0]

                def sample() -> None:
                    with Pipe.open(name) as other:
                        while not stop.is_set():
                            counters_of(other.stats())
                            samples[0] += 1

                def consume() -> None:
                    for _ in range(count):
                        got.append(int.from_bytes(reader.recv(timeout=10), "little"))

                threads = [threading.Thread(target=sample), threading.Thread(target=consume)]
                for t in threads:
                    t.start()
                for i in range(count):
                    writer.send(i.to_bytes(8, "little"), timeout=10)
                threads[1].join(timeout=30)
                stop.set()
                threads[0].join(timeout=5)
                assert got == list(range(count))
                assert samples[0] > 10
                st = counters_of(pipe.stats())
                assert st.drops == 0 and st.messages == count
            finally:
                Pipe.unlink(name)
