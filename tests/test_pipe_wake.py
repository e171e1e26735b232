"""No lost wake-ups: sleepers on the futex are always woken by the publication itself.

With spinning off, every wait sleeps on the futex. A wake-up that was lost would still be
rescued by the 20 ms liveness timer, so the ends count the sleeps that ran out their time
while the condition held and the futex word was never bumped (``late_wakeups``): that must
stay zero.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest
from test_pipe_support import (
    CTX,
    STRESS,
    PipeNames,
    block_until_interrupted,
    echo_worker,
    kill_and_reap,
    pipe_names,
    sparse_reader,
)

from pykernel import Pipe


@pytest.fixture
def names() -> Iterator[PipeNames]:
    with pipe_names() as n:
        yield n


class TestSignals:
    @pytest.mark.parametrize("reading", [True, False], ids=["recv", "send"])
    def test_ctrl_c_interrupts_an_endless_wait(self, names: PipeNames, reading: bool) -> None:
        """SIGINT reaches Python while recv/send waits forever (timeout=None)."""
        name = names()
        with Pipe.create(name, slot_size=16, slots=4) as pipe:
            other = pipe.writer() if reading else pipe.reader()
            started, results = CTX.Event(), CTX.Queue()
            proc = CTX.Process(
                target=block_until_interrupted, args=(name, reading, started, results)
            )
            proc.start()
            try:
                assert started.wait(30)
                time.sleep(0.3)  # into the futex sleep, past the spin
                os.kill(proc.pid, signal.SIGINT)
                assert results.get(timeout=10) == "interrupted"
            finally:
                kill_and_reap(proc)
                other.close()

    def test_endless_batch_spans_slices(self, names: PipeNames) -> None:
        """send_batch(timeout=None) sends everything even when it waits longer than a slice."""
        with (
            Pipe.create(names(), slot_size=16, slots=4) as pipe,
            pipe.writer() as w,
            pipe.reader() as r,
        ):
            got: list[bytes] = []

            def slow_reader() -> None:
                while len(got) < 12:
                    time.sleep(0.04)
                    got.append(r.recv(timeout=10))

            t = threading.Thread(target=slow_reader)
            t.start()
            msgs = [bytes([i]) * (1 + i % 3) for i in range(12)]
            assert w.send_batch(msgs) == 12
            t.join(10)
            assert got == msgs


class TestRoom:
    def test_one_freed_slot_is_enough(self, names: PipeNames) -> None:
        """A blocked send proceeds when a single slot frees (the spin's batching is a hint)."""
        with (
            Pipe.create(names(), slot_size=8, slots=64) as pipe,
            pipe.writer() as w,
            pipe.reader() as r,
        ):
            for i in range(64):
                w.send_nowait(bytes([i]))
            t = threading.Timer(0.02, r.recv)
            t.start()
            w.send(b"late", timeout=10)
            t.join()
            assert pipe.stats().fill == 64

    def test_spinning_writer_sees_room_freed_after_it_looked(self, names: PipeNames) -> None:
        """A spinning writer notices slots freed one by one, not only when its spin runs out."""
        with (
            Pipe.create(names(), slot_size=8, slots=64) as pipe,  # spin waits for 64/8 slots
            pipe.writer() as w,
            pipe.reader() as r,
        ):
            w.spin_us = 1e6  # a second: the bug made every full-ring send last that long
            for i in range(64):
                w.send_nowait(bytes([i]))

            def drain() -> None:
                time.sleep(0.02)
                for _ in range(10):  # one at a time: the writer first sees 1 free, then more
                    r.recv(timeout=10)
                    time.sleep(0.002)

            t = threading.Thread(target=drain)
            t.start()
            began = time.monotonic()
            w.send(b"late", timeout=10)
            took = time.monotonic() - began
            t.join()
            assert took < 0.5, f"send waited {took:.3f} s for room freed after ~0.04 s"


    def test_skipping_aborted_slots_wakes_a_sleeping_writer(self, names: PipeNames) -> None:
        """Room made by skipping aborted claims wakes a sleeping writer at once (no late wake)."""
        with (
            Pipe.create(names(), slot_size=8, slots=2, shape="combiner", max_writers=2) as pipe,
            pipe.writer() as w1,
            pipe.writer() as w2,
            pipe.reader() as r,
        ):
            for _ in range(2):  # the ring is full of aborted claims
                w1.reserve(8).abort()
            w2.spin_us = r.spin_us = 0
            t = threading.Thread(target=w2.send, args=(b"room",), kwargs={"timeout": 10})
            t.start()
            deadline = time.monotonic() + 10
            while pipe.stats().writers[w2.index].waits == 0 and time.monotonic() < deadline:
                time.sleep(0.001)
            time.sleep(0.005)  # let it reach the futex
            assert r.recv(timeout=10) == b"room"
            t.join()
            assert w2.late_wakeups == 0


class TestNoLostWakeups:
    def test_ping_pong_without_spinning(self, names: PipeNames) -> None:
        """Thousands of sleep/wake round trips between two processes lose no wake-up."""
        a, b = names("ping"), names("pong")
        count = 1500 * STRESS
        with (
            Pipe.create(a, slot_size=16, slots=2) as pa,
            Pipe.create(b, slot_size=16, slots=2) as pb,
        ):
            results = CTX.Queue()
            proc = CTX.Process(target=echo_worker, args=(a, b, count, 0, results))
            proc.start()
            try:
                with pa.writer() as w, pb.reader() as r:
                    w.spin_us = r.spin_us = 0
                    for i in range(count):
                        msg = i.to_bytes(4, "little")
                        w.send(msg, timeout=30)
                        assert r.recv(timeout=30) == msg
                    mine = (r.late_wakeups, w.late_wakeups)
                theirs = results.get(timeout=30)
                proc.join(30)
            finally:
                kill_and_reap(proc)
        assert mine == (0, 0) and theirs == (0, 0)
        assert pa.closed and pb.closed

    def test_full_ring_writer_wakes(self, names: PipeNames) -> None:
        """A writer sleeping on a full 2-slot ring is woken by each consumption."""
        a, b = names("fill"), names("back")
        count = 1500 * STRESS
        with (
            Pipe.create(a, slot_size=16, slots=2) as pa,
            Pipe.create(b, slot_size=16, slots=2) as pb,
        ):
            results = CTX.Queue()
            proc = CTX.Process(target=echo_worker, args=(a, b, count, 0, results))
            proc.start()
            try:
                with pa.writer() as w, pb.reader() as r:
                    w.spin_us = r.spin_us = 0
                    sent = received = 0
                    while received < count:
                        while sent < count and sent - received < 4:
                            w.send(sent.to_bytes(4, "little"), timeout=30)
                            sent += 1
                        assert r.recv(timeout=30) == received.to_bytes(4, "little")
                        received += 1
                    assert (r.late_wakeups, w.late_wakeups) == (0, 0)
                assert results.get(timeout=30) == (0, 0)
            finally:
                kill_and_reap(proc)

    def test_many_sleepers_all_woken(self, names: PipeNames) -> None:
        """Four sleeping multiplexer readers are all woken by every sparse message."""
        name = names("fan")
        count = 100 * STRESS
        with (
            Pipe.create(name, slot_size=16, slots=4, shape="multiplexer") as pipe,
            pipe.writer() as w,
        ):
            results = CTX.Queue()
            procs = []
            for _ in range(4):
                attached = CTX.Event()
                p = CTX.Process(target=sparse_reader, args=(name, count, attached, results))
                p.start()
                procs.append(p)
                assert attached.wait(30)
            try:
                for i in range(count):
                    w.send(i.to_bytes(4, "little"), timeout=30)
                    time.sleep(0.0005)  # let the readers fall asleep again
                reports = [results.get(timeout=30) for _ in procs]
            finally:
                for p in procs:
                    kill_and_reap(p)
        for got, late in reports:
            assert got == list(range(count)) and late == 0
