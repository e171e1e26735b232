"""pytest-benchmark of the pipe's hot calls (numbers, not pass/fail).

In one process (the cost of a call, no scheduling): send+recv of 64 B (and the same through
the full cffi calls, without the GIL-held fast path), a batch of 1024
messages each way (lists of bytes, and packed numpy rows), zero-copy reserve/commit +
view/release of 4 KiB through numpy, ``stats()``. Across two processes pinned to two CPUs:
a 64 B ping-pong round trip against an echo child, and 64 B one way one message per call
(``send``/``recv``, as the comparison's per-call row drives it; extra_info has msgs/s).
Run: ``.venv/bin/python -m pytest benches/test_bench_pipe_calls.py``.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from pykernel import Pipe, PipeNotFoundError

MSG = b"x" * 64


def _pin(cpu: int) -> None:
    """Pin to one CPU, as the peer baselines were measured (when there are two)."""
    if len(os.sched_getaffinity(0)) >= 2:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[cpu]})


def _echo(a: str, b: str, n: int) -> None:
    _pin(1)
    with Pipe.open(a) as pa, Pipe.open(b) as pb, pa.reader() as r, pb.writer() as w:
        for _ in range(n):
            w.send(r.recv(timeout=60))


def _sink(a: str, b: str, rounds: int, n: int) -> None:
    """Read ``n`` messages per round one call each, then acknowledge the round on ``b``."""
    _pin(1)
    with Pipe.open(a) as pa, Pipe.open(b) as pb, pa.reader() as r, pb.writer() as w:
        recv = r.recv
        for _ in range(rounds):
            for _ in range(n):
                recv(60)
            w.send(b"k")


@pytest.fixture
def pipes() -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for name in made:
        with contextlib.suppress(PipeNotFoundError):
            Pipe.unlink(name)


def _pipe(pipes: list[str], label: str, **kw: object) -> Pipe:
    name = f"bench.{label}.{os.getpid()}"
    pipes.append(name)
    return Pipe.create(name, **kw)  # type: ignore[arg-type]


def test_send_recv_64(record_machine, pipes) -> None:  # type: ignore[no-untyped-def]
    with _pipe(pipes, "pair", slot_size=64, slots=256) as p, p.writer() as w, p.reader() as r:

        def pair() -> bytes:
            w.send(MSG)
            return r.recv()

        assert record_machine(pair) == MSG


def test_send_recv_64_full_call(record_machine, pipes) -> None:  # type: ignore[no-untyped-def]
    """The same pair through the full cffi calls alone (what the GIL-held fast path saves)."""
    from pykernel._pipe_reader import _recv_len as recv_len
    from pykernel._pipe_writer import _send as send

    with _pipe(pipes, "full", slot_size=64, slots=256) as p, p.writer() as w, p.reader() as r:
        buf = r._bufv

        def pair() -> bytes:
            send(w._h, MSG, 64, 0)
            return buf[: recv_len(r._h, r._buf, 64, 0)]

        assert record_machine(pair) == MSG


def test_batch_1024x64(record_machine, pipes) -> None:  # type: ignore[no-untyped-def]
    msgs = [MSG] * 1024
    with _pipe(pipes, "batch", slot_size=64, slots=1024) as p, p.writer() as w, p.reader() as r:

        def batch() -> int:
            w.send_batch(msgs)
            return len(r.recv_batch(1024))

        assert record_machine(batch) == 1024
        record_machine.extra_info["messages_per_round"] = 1024


def test_packed_1024x64(record_machine, pipes) -> None:  # type: ignore[no-untyped-def]
    rows = np.zeros((1024, 16), dtype=np.uint32)
    buf, lens = np.zeros_like(rows), np.zeros(1024, dtype=np.uint32)
    with _pipe(pipes, "packed", slot_size=64, slots=1024) as p, p.writer() as w, p.reader() as r:

        def packed() -> int:
            w.send_packed(rows, 64)
            return r.recv_packed(buf, lens)

        assert record_machine(packed) == 1024
        record_machine.extra_info["messages_per_round"] = 1024


def test_zero_copy_4k(record_machine, pipes) -> None:  # type: ignore[no-untyped-def]
    src = np.arange(1024, dtype=np.float32)
    with _pipe(pipes, "zc", slot_size=4096, slots=64) as p, p.writer() as w, p.reader() as r:

        def zero_copy() -> float:
            with w.reserve(4096) as slot:
                slot.array(np.float32, 1024)[:] = src
            with r.view() as v:
                return float(v.array(np.float32, 1024)[-1])

        assert record_machine(zero_copy) == 1023.0


def test_stats(record_machine, pipes) -> None:  # type: ignore[no-untyped-def]
    with (
        _pipe(pipes, "stats", slot_size=64, slots=256, shape="multiplexer") as p,
        p.writer(),
        p.reader(),
    ):
        assert record_machine(p.stats).written == 0


@contextlib.contextmanager
def _pinned_child(target: Callable[..., None], *args: object) -> Iterator[None]:
    """Run ``target`` in a spawned child (it pins itself to CPU 1) while we hold CPU 0."""
    child = mp.get_context("spawn").Process(target=target, args=args)
    child.start()
    before = os.sched_getaffinity(0)
    _pin(0)
    try:
        yield
        child.join(60)
    finally:
        os.sched_setaffinity(0, before)
        if child.is_alive():
            child.kill()
            child.join()


def test_ping_pong_64(record_machine, pipes) -> None:  # type: ignore[no-untyped-def]
    rounds, n = 20, 1000
    pa = _pipe(pipes, "ping", slot_size=64, slots=256)
    pb = _pipe(pipes, "pong", slot_size=64, slots=256)
    with (
        _pinned_child(_echo, pa.name, pb.name, rounds * n),
        pa,
        pb,
        pa.writer() as w,
        pb.reader() as r,
    ):

        def thousand_round_trips() -> None:
            for _ in range(n):
                w.send(MSG)
                r.recv(timeout=60)

        record_machine.pedantic(thousand_round_trips, rounds=rounds, iterations=1)
        record_machine.extra_info["round_trips_per_round"] = n


def test_one_way_64_per_call(record_machine, pipes) -> None:  # type: ignore[no-untyped-def]
    rounds, n = 20, 20_000
    pa = _pipe(pipes, "oneway", slot_size=64, slots=256)
    pb = _pipe(pipes, "ack", slot_size=8, slots=2)
    with (
        _pinned_child(_sink, pa.name, pb.name, rounds, n),
        pa,
        pb,
        pa.writer() as w,
        pb.reader() as r,
    ):
        send = w.send

        def messages() -> None:
            for _ in range(n):
                send(MSG)
            r.recv(timeout=60)  # the reader took all n

        record_machine.pedantic(messages, rounds=rounds, iterations=1)
        record_machine.extra_info["messages_per_round"] = n
        median = record_machine.stats.stats.median
        record_machine.extra_info["msgs_per_s_median"] = round(n / median)
