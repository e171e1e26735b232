"""Stress in real processes: all three shapes, lossless and lossy, random sizes and pauses.

Every message is tagged (writer id, sequence) with a payload derived from the tag; readers
check order, count and content. PYKERNEL_STRESS=N multiplies the message counts.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator

import pytest
from test_pipe_support import (
    CTX,
    STRESS,
    PipeNames,
    check,
    kill_and_reap,
    message,
    pipe_names,
    reader_worker,
    writer_worker,
)

from pykernel import Pipe, WriterGoneError


@pytest.fixture
def names() -> Iterator[PipeNames]:
    with pipe_names() as n:
        yield n


def wait_attached(pipe: Pipe, writers: int = 0, readers: int = 0, timeout: float = 30) -> None:
    """Poll the pipe's stats until that many live writers and readers are attached."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = pipe.stats()
        if (
            sum(w.alive for w in s.writers) >= writers
            and sum(r.alive for r in s.readers) >= readers
        ):
            return
        time.sleep(0.01)
    raise AssertionError(f"peers did not attach: {pipe.stats()}")


@pytest.mark.parametrize("lossy", [False, True], ids=["lossless", "lossy"])
@pytest.mark.parametrize(
    ("shape", "n_writers", "n_readers"),
    [("one", 1, 1), ("multiplexer", 1, 3), ("combiner", 4, 1)],
)
class TestStress:
    def test_tagged_messages(
        self, names: PipeNames, shape: str, n_writers: int, n_readers: int, lossy: bool
    ) -> None:
        """Every message arrives once, in per-writer order, intact (lossy: or is counted)."""
        count = 4000 * STRESS
        name = names(shape)
        pipe = Pipe.create(
            name, slot_size=200, slots=64, shape=shape, lossy=lossy, max_readers=8, max_writers=8
        )
        results = CTX.Queue()
        go = CTX.Event()
        readers, writers = [], []
        try:
            for _ in range(n_readers):
                ready = CTX.Event()
                p = CTX.Process(target=reader_worker, args=(name, n_writers, 0.01, results, ready))
                p.start()
                readers.append(p)
                assert ready.wait(30)
            for wid in range(n_writers):
                p = CTX.Process(target=writer_worker, args=(name, wid, count, 0.01, True, go))
                p.start()
                writers.append(p)
            wait_attached(pipe, writers=n_writers, readers=n_readers)
            go.set()
            for p in writers:
                p.join(120)
                assert p.exitcode == 0
            reports = [results.get(timeout=120) for _ in readers]
        finally:
            for p in writers + readers:
                kill_and_reap(p)
            pipe.close()
        for _pid, got, last, errors, dropped in reports:
            assert errors == []
            if lossy:
                assert sum(got) + dropped == count * n_writers
                assert all(seq <= count - 1 for seq in last)
            else:
                assert got == [count] * n_writers
                assert last == [count - 1] * n_writers
                assert dropped == 0


class TestManyEnds:
    def test_32_readers(self, names: PipeNames) -> None:
        """A multiplexer feeds 32 readers; each sees every message in order."""
        name = names("mux32")
        count = 500 * STRESS
        with Pipe.create(name, slot_size=64, slots=16, shape="multiplexer", max_readers=32) as pipe:
            readers = [pipe.reader() for _ in range(32)]
            go = CTX.Event()
            proc = CTX.Process(target=writer_worker, args=(name, 0, count, 0.0, True, go))
            proc.start()
            try:
                go.set()
                seen = [0] * 32
                while min(seen) < count:
                    for i, r in enumerate(readers):
                        if seen[i] < count:
                            for m in r.recv_batch(64, timeout=30):
                                assert check(m, 64) == (0, seen[i])
                                seen[i] += 1
                proc.join(30)
                assert proc.exitcode == 0
            finally:
                kill_and_reap(proc)

    def test_32_writers(self, names: PipeNames) -> None:
        """A combiner takes 32 writers; per-writer order is kept, nothing lost or doubled."""
        name = names("comb32")
        count = 300 * STRESS
        with Pipe.create(name, slot_size=64, slots=64, shape="combiner", max_writers=32) as pipe:
            writers = [pipe.writer() for _ in range(32)]
            ready = CTX.Event()
            results = CTX.Queue()
            proc = CTX.Process(target=reader_worker, args=(name, 32, 0.0, results, ready))
            proc.start()
            try:
                assert ready.wait(30)
                for seq in range(count):
                    for wid, w in enumerate(writers):
                        w.send(message(wid, seq, 64), timeout=30)
                for w in writers:
                    w.close()
                _pid, got, last, errors, _dropped = results.get(timeout=60)
                assert errors == []
                assert got == [count] * 32 and last == [count - 1] * 32
            finally:
                kill_and_reap(proc)

    def test_attach_detach_while_running(self, names: PipeNames) -> None:
        """Readers join and leave a running multiplexer; each sees a gapless run."""
        name = names("churn")
        count = 3000 * STRESS
        with Pipe.create(name, slot_size=64, slots=8, shape="multiplexer") as pipe:
            go = CTX.Event()
            proc = CTX.Process(target=writer_worker, args=(name, 0, count, 0.2, False, go))
            proc.start()
            try:
                go.set()
                runs = 0
                while True:
                    with pipe.reader() as r:
                        try:
                            first = check(r.recv(timeout=30), 64)[1]
                        except WriterGoneError:
                            break
                        for k in range(1, 50):
                            try:
                                assert check(r.recv(timeout=30), 64)[1] == first + k
                            except WriterGoneError:
                                break
                    runs += 1
                assert runs >= 3
                proc.join(30)
                assert proc.exitcode == 0
            finally:
                kill_and_reap(proc)


class TestTags:
    def test_tag_roundtrip(self) -> None:
        """The tag helpers detect a single flipped byte."""
        m = bytearray(message(3, 77, 200))
        assert check(bytes(m), 200) == (3, 77)
        m[-1] ^= 1
        with pytest.raises(AssertionError, match="corrupt message from writer 3 seq 77"):
            check(bytes(m), 200)
        assert struct.unpack_from("<IQ", m) == (3, 77)
