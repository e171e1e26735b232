"""Helpers shared by the pipe tests: unique names that are always unlinked, tagged messages,
and the child-process workers (importable, so they run under the spawn start method).

Every stress message is tagged (writer id, sequence) and its payload is derived from the
tag, so a reader checks order, count and content of everything it receives.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from pykernel import Pipe, PipeNotFoundError, WriterGoneError

TAG = struct.Struct("<IQ")  # writer id, sequence
CTX = mp.get_context("spawn")
STRESS = max(1, int(os.environ.get("PYKERNEL_STRESS", "1")))


class PipeNames:
    """Hands out unique pipe names and unlinks every one of them at exit, even on failure."""

    def __init__(self) -> None:
        self.made: list[str] = []

    def __call__(self, label: str = "t") -> str:
        name = f"test.{label}.{os.getpid()}.{len(self.made)}.{random.getrandbits(32):08x}"
        self.made.append(name)
        return name

    def cleanup(self) -> None:
        for name in self.made:
            with suppress(PipeNotFoundError):
                Pipe.unlink(name)


@contextmanager
def pipe_names() -> Iterator[PipeNames]:
    """Context manager form of :class:`PipeNames`."""
    names = PipeNames()
    try:
        yield names
    finally:
        names.cleanup()


def message(wid: int, seq: int, slot_size: int) -> bytes:
    """The tagged message number ``seq`` of writer ``wid``: length varies with the tag."""
    tag = TAG.pack(wid, seq)
    n = TAG.size + (seq * 2654435761 + wid * 40503) % (slot_size - TAG.size + 1)
    return (tag * (n // TAG.size + 1))[:n]


def check(msg: bytes, slot_size: int) -> tuple[int, int]:
    """Return (writer id, sequence) of a stress message after checking its whole content."""
    wid, seq = TAG.unpack_from(msg)
    expected = message(wid, seq, slot_size)
    if msg != expected:
        raise AssertionError(f"corrupt message from writer {wid} seq {seq}: {len(msg)} bytes")
    return wid, seq


def kill_and_reap(proc: Any) -> None:
    """SIGKILL a multiprocessing child (if still running) and wait for it."""
    if proc.is_alive():
        os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)


# ---- child-process workers ---------------------------------------------------------------


def writer_worker(name: str, wid: int, count: int, pause: float, batch: bool, go: Any) -> None:
    """Send ``count`` tagged messages; pause now and then; batch some when asked."""
    rng = random.Random(wid)
    with Pipe.open(name) as pipe, pipe.writer() as w:
        w.spin_us = 20
        go.wait(30)
        seq = 0
        while seq < count:
            if pause and rng.random() < pause:
                time.sleep(rng.random() * 0.002)
            if batch and rng.random() < 0.3:
                k = min(count - seq, rng.randint(1, 64))
                w.send_batch([message(wid, seq + i, pipe.slot_size) for i in range(k)])
                seq += k
            else:
                w.send(message(wid, seq, pipe.slot_size))
                seq += 1


def reader_worker(name: str, writers: int, pause: float, results: Any, ready: Any) -> None:
    """Read until no writer is left; report per-writer counts, order errors and drops."""
    rng = random.Random(os.getpid())
    with Pipe.open(name) as pipe, pipe.reader() as r:
        r.spin_us = 20
        ready.set()
        last = [-1] * writers
        got = [0] * writers
        errors: list[str] = []
        while True:
            try:
                msgs = r.recv_batch(256, timeout=30) if rng.random() < 0.5 else [r.recv(30)]
            except WriterGoneError:
                break
            for m in msgs:
                try:
                    wid, seq = check(m, pipe.slot_size)
                except AssertionError as exc:
                    errors.append(str(exc))
                    continue
                if seq <= last[wid] or (not pipe.lossy and seq != last[wid] + 1):
                    errors.append(f"writer {wid}: seq {seq} after {last[wid]}")
                last[wid] = seq
                got[wid] += 1
            if pause and rng.random() < pause:
                time.sleep(rng.random() * 0.002)
        results.put((os.getpid(), got, last, errors[:5], r.dropped))


def reserve_and_hang(name: str, shape_combiner: bool, reserved: Any) -> None:
    """Reserve a slot, write half of it, tell the parent, and wait to be killed."""
    with Pipe.open(name) as pipe:
        w = pipe.writer()
        w.send(b"before")
        slot = w.reserve(64)
        slot.buffer[:32] = b"x" * 32
        reserved.set()
        time.sleep(60)
        raise AssertionError(f"not killed ({shape_combiner})")


def attach_reader_and_hang(name: str, attached: Any) -> None:
    """Attach a reader, read nothing, wait to be killed."""
    with Pipe.open(name) as pipe, pipe.reader():  # held: a dropped end detaches itself
        attached.set()
        time.sleep(60)


def echo_worker(name_in: str, name_out: str, count: int, spin_us: float, results: Any) -> None:
    """Ping-pong peer: receive and send back ``count`` messages; report late wake-ups."""
    with Pipe.open(name_in) as pin, Pipe.open(name_out) as pout:
        r, w = pin.reader(), pout.writer()
        r.spin_us = spin_us
        w.spin_us = spin_us
        for _ in range(count):
            w.send(r.recv(timeout=30))
        results.put((r.late_wakeups, w.late_wakeups))


def create_and_hang(name: str, made: Any) -> None:
    """Create a pipe, attach both ends, and wait to be killed (leaving a stale segment)."""
    pipe = Pipe.create(name, slot_size=16, slots=4)
    w, r = pipe.writer(), pipe.reader()
    w.send(b"stale")
    made.set()
    time.sleep(60)
    raise AssertionError(f"not killed: {r} {w}")


def read_some_and_hang(name: str, n: int, attached: Any, done: Any) -> None:
    """Attach a reader, read n messages, then stop reading and wait to be killed."""
    with Pipe.open(name) as pipe:
        r = pipe.reader()
        attached.set()
        for _ in range(n):
            r.recv(timeout=30)
        done.set()
        time.sleep(60)


def sparse_reader(name: str, count: int, attached: Any, results: Any) -> None:
    """A multiplexer reader that always sleeps (no spinning) between sparse messages."""
    with Pipe.open(name) as pipe, pipe.reader() as r:
        r.spin_us = 0
        attached.set()
        got = [struct.unpack("<I", r.recv(timeout=30))[0] for _ in range(count)]
        results.put((got, r.late_wakeups))


def block_until_interrupted(name: str, reading: bool, started: Any, results: Any) -> None:
    """Block forever in recv (or in send on a full pipe) until SIGINT; report how it ended."""
    with Pipe.open(name) as pipe:
        end = pipe.reader() if reading else pipe.writer()
        try:
            if not reading:
                while True:
                    end.send(b"fill", timeout=0)
        except Exception:
            pass
        started.set()
        try:
            if reading:
                end.recv()
            else:
                end.send(b"blocked")
        except KeyboardInterrupt:
            results.put("interrupted")
        else:
            results.put("returned")
        end.close()


def echo_from_pickled_pipe(pipe: Pipe, results: Any) -> None:
    """Receive a pickled Pipe (opened by name in this process) and report one message."""
    with pipe, pipe.reader() as r:
        results.put((pipe.name, pipe.slots, r.recv(timeout=30)))


def create_racer(name: str, go: Any, results: Any) -> None:
    """Create-or-open the same pipe as the others at the same moment; report the geometry."""
    go.wait(30)
    with Pipe.create(name, slot_size=32, slots=64, exist_ok=True) as pipe:
        results.put((pipe.slot_size, pipe.slots))


def clean_as_nobody(results: Any) -> None:
    """Drop to uid 65534 and run clean_pipes; report what it removed (or its error)."""
    os.setgid(65534)
    os.setuid(65534)
    from pykernel import clean_pipes

    try:
        results.put(clean_pipes())
    except Exception as exc:
        results.put(repr(exc))
