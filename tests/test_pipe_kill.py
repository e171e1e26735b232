"""Peers killed with SIGKILL: the survivors continue or get a clear error in bounded time.

"Bounded" is expressed as the timeout of the survivor's call: it must finish with the
right outcome (not PipeTimeout) well within it; the liveness check runs every 20 ms.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from conftest import require_root, require_tool
from test_pipe_support import (
    CTX,
    STRESS,
    PipeNames,
    attach_reader_and_hang,
    check,
    create_and_hang,
    kill_and_reap,
    pipe_names,
    read_some_and_hang,
    reserve_and_hang,
    writer_worker,
)

from pykernel import (
    Pipe,
    PipeEmpty,
    PipeFull,
    PipeTimeout,
    ReaderGoneError,
    WriterGoneError,
    clean_pipes,
)

BOUND = 10.0  # seconds a survivor may take to notice; in practice tens of milliseconds


@pytest.fixture
def names() -> Iterator[PipeNames]:
    with pipe_names() as n:
        yield n


class TestKilledReader:
    def test_multiplexer_detaches_dead_reader(self, names: PipeNames) -> None:
        """A reader killed mid-stream no longer holds the writer back."""
        name = names()
        with (
            Pipe.create(name, slot_size=16, slots=8, shape="multiplexer") as pipe,
            pipe.writer() as w,
            pipe.reader() as mine,
        ):
            attached, done = CTX.Event(), CTX.Event()
            proc = CTX.Process(target=read_some_and_hang, args=(name, 3, attached, done))
            proc.start()
            try:
                assert attached.wait(BOUND)
                for i in range(8):  # the child reads 3, then holds the writer back
                    w.send(struct.pack("<I", i), timeout=BOUND)
                    assert mine.recv(timeout=BOUND) == struct.pack("<I", i)
                assert done.wait(BOUND)
                for i in range(8, 11):  # the ring is now full up to the child's position
                    w.send(struct.pack("<I", i), timeout=BOUND)
                    assert mine.recv(timeout=BOUND) == struct.pack("<I", i)
                with pytest.raises(PipeTimeout):
                    w.send(b"held", timeout=0.1)
                os.kill(proc.pid, signal.SIGKILL)
                proc.join(BOUND)
                for i in range(11, 40):  # laps past the dead reader
                    w.send(struct.pack("<I", i), timeout=BOUND)
                    assert mine.recv(timeout=BOUND) == struct.pack("<I", i)
                assert sum(r.pid > 0 for r in pipe.stats().readers) == 1
            finally:
                kill_and_reap(proc)

    def test_one_writer_gets_reader_gone(self, names: PipeNames) -> None:
        """A 1:1 writer blocked on a full pipe learns the reader died; a new one resumes."""
        name = names()
        with Pipe.create(name, slot_size=16, slots=4) as pipe, pipe.writer() as w:
            attached = CTX.Event()
            proc = CTX.Process(target=attach_reader_and_hang, args=(name, attached))
            proc.start()
            try:
                assert attached.wait(BOUND)
                for i in range(4):
                    w.send(bytes([i]))
                os.kill(proc.pid, signal.SIGKILL)
                with pytest.raises(ReaderGoneError, match="reader is gone"):
                    w.send(b"x", timeout=BOUND)
            finally:
                kill_and_reap(proc)
            with pipe.reader() as r:
                assert r.recv_batch(10) == [b"\0", b"\1", b"\2", b"\3"]
            w.send(b"after", timeout=BOUND)


class TestPollers:
    def test_nowait_calls_notice_dead_peers(self, names: PipeNames) -> None:
        """Pollers using only *_nowait calls also get dead peers reaped or reported."""
        name = names()
        with (
            Pipe.create(name, slot_size=16, slots=4, shape="multiplexer") as pipe,
            pipe.writer() as w,
        ):
            attached = CTX.Event()
            proc = CTX.Process(target=attach_reader_and_hang, args=(name, attached))
            proc.start()
            try:
                assert attached.wait(BOUND)
                for i in range(4):
                    w.send_nowait(bytes([i]))
                with pytest.raises(PipeFull):
                    w.send_nowait(b"held")
                os.kill(proc.pid, signal.SIGKILL)
                proc.join(BOUND)
                deadline = time.monotonic() + BOUND
                while True:  # a liveness check runs at most every 20 ms per handle
                    try:
                        w.send_nowait(b"free")
                        break
                    except PipeFull:
                        assert time.monotonic() < deadline
                        time.sleep(0.005)
            finally:
                kill_and_reap(proc)
        with Pipe.create(names(), slot_size=16, slots=4) as pipe, pipe.reader() as r:
            pipe.writer().close()
            deadline = time.monotonic() + BOUND
            with pytest.raises(WriterGoneError):
                while time.monotonic() < deadline:
                    with contextlib.suppress(PipeEmpty):
                        r.recv_nowait()
                    time.sleep(0.005)


class TestKilledWriter:
    @pytest.mark.parametrize("lossy", [False, True], ids=["lossless", "lossy"])
    @pytest.mark.parametrize("shape", ["one", "multiplexer"])
    def test_between_reserve_and_commit(self, names: PipeNames, shape: str, lossy: bool) -> None:
        """A writer killed holding a half-written slot: no half message, WriterGoneError."""
        name = names()
        with (
            Pipe.create(name, slot_size=64, slots=4, shape=shape, lossy=lossy) as pipe,
            pipe.reader() as r,
        ):
            reserved = CTX.Event()
            proc = CTX.Process(target=reserve_and_hang, args=(name, False, reserved))
            proc.start()
            try:
                assert reserved.wait(BOUND)
                assert r.recv(timeout=BOUND) == b"before"
                with pytest.raises(PipeTimeout):
                    r.recv(timeout=0.1)  # the writer lives: nothing to report yet
                os.kill(proc.pid, signal.SIGKILL)
                with pytest.raises(WriterGoneError, match="no writer is left"):
                    r.recv(timeout=BOUND)
            finally:
                kill_and_reap(proc)
            with pipe.writer() as w:  # the dead writer's place is reclaimed
                w.send(b"after")
                assert r.recv(timeout=BOUND) == b"after"

    @pytest.mark.parametrize("lossy", [False, True], ids=["lossless", "lossy"])
    def test_combiner_writer_dies_mid_claim(self, names: PipeNames, lossy: bool) -> None:
        """A combiner writer killed holding a claim: the hole is repaired, others go on."""
        name = names()
        with (
            Pipe.create(name, slot_size=64, slots=8, shape="combiner", lossy=lossy) as pipe,
            pipe.reader() as r,
        ):
            reserved = CTX.Event()
            proc = CTX.Process(target=reserve_and_hang, args=(name, True, reserved))
            proc.start()
            try:
                assert reserved.wait(BOUND)
                with pipe.writer() as w:
                    for i in range(3):
                        w.send(struct.pack("<I", i))
                    assert r.recv(timeout=BOUND) == b"before"
                    with pytest.raises(PipeTimeout):
                        r.recv(timeout=0.1)  # held behind the live writer's claim
                    os.kill(proc.pid, signal.SIGKILL)
                    got = [r.recv(timeout=BOUND) for _ in range(3)]
                    assert got == [struct.pack("<I", i) for i in range(3)]
                    w.send(b"more")
                    assert r.recv(timeout=BOUND) == b"more"
                assert sum(s.pid > 0 for s in pipe.stats().writers) == 0
            finally:
                kill_and_reap(proc)

    @pytest.mark.parametrize("lossy", [False, True], ids=["lossless", "lossy"])
    def test_combiner_writer_killed_under_load(self, names: PipeNames, lossy: bool) -> None:
        """Killing one of three busy writers loses only its own tail; survivors are whole
        (lossy: survivors keep order and content, missing only what was overwritten)."""
        name = names()
        count = 3000 * STRESS
        with (
            Pipe.create(name, slot_size=128, slots=16, shape="combiner", lossy=lossy) as pipe,
            pipe.reader() as r,
        ):
            go = CTX.Event()
            procs = [
                CTX.Process(target=writer_worker, args=(name, wid, count, 0.01, True, go))
                for wid in range(3)
            ]
            for p in procs:
                p.start()
            try:
                while sum(w.alive for w in pipe.stats().writers) < 3:
                    assert all(p.exitcode is None for p in procs)
                go.set()
                last = [-1, -1, -1]
                killed = False
                while True:
                    try:
                        msgs = r.recv_batch(64, timeout=BOUND)
                    except WriterGoneError:
                        break
                    for m in msgs:
                        wid, seq = check(m, 128)
                        if lossy:
                            assert seq > last[wid], (wid, seq, last)
                        else:
                            assert seq == last[wid] + 1, (wid, seq, last)
                        last[wid] = seq
                    if not killed and last[0] > count // 4:
                        os.kill(procs[0].pid, signal.SIGKILL)
                        killed = True
                assert killed
                if not lossy:
                    assert last[1:] == [count - 1, count - 1]
                assert last[0] < count - 1 or procs[0].exitcode == 0
            finally:
                for p in procs:
                    kill_and_reap(p)


class TestStaleSegments:
    def test_clean_after_kill(self, names: PipeNames) -> None:
        """A pipe whose creator and ends were all killed is stale and gets cleaned."""
        name = names()
        made = CTX.Event()
        proc = CTX.Process(target=create_and_hang, args=(name, made))
        proc.start()
        try:
            assert made.wait(BOUND)
            assert name not in clean_pipes()  # its processes are alive
        finally:
            kill_and_reap(proc)
        assert name in clean_pipes()
        assert not os.path.exists(f"/dev/shm/pykernel.{name}")


class TestFork:
    def test_forked_copy_does_not_detach_parent(self, names: PipeNames) -> None:
        """A forked child closing its inherited ends leaves the parent's records alone."""
        with (
            Pipe.create(names(), slot_size=16, slots=4) as pipe,
            pipe.writer() as w,
            pipe.reader() as r,
        ):
            pid = os.fork()
            if pid == 0:  # child: close the inherited copies, then leave at once
                w.close()
                r.close()
                pipe.close()
                os._exit(0)
            os.waitpid(pid, 0)
            s = pipe.stats()
            assert s.writers[0].pid == os.getpid() and s.readers[0].pid == os.getpid()
            w.send(b"still mine")
            assert r.recv(timeout=BOUND) == b"still mine"


class TestPidNamespaces:
    def test_other_namespace_does_not_judge_our_pids(self, names: PipeNames) -> None:
        """clean_pipes run under `unshare --pid` leaves our live pipe and its peers alone."""
        require_root()
        unshare = require_tool("unshare")
        name = names()
        with Pipe.create(name, slot_size=16, slots=4) as pipe, pipe.writer() as w:
            code = (
                "from pykernel import Pipe, clean_pipes; import json; "
                f"removed = clean_pipes(); p = Pipe.open({name!r}); s = p.stats(); "
                "print(json.dumps([removed, s.writers[0].alive]))"
            )
            out = subprocess.run(
                [unshare, "--pid", "--fork", "--mount-proc", sys.executable, "-c", code],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout
            removed, writer_alive = json.loads(out)
            assert name not in removed and writer_alive
            w.send(b"still here")
            assert os.path.exists(f"/dev/shm/pykernel.{name}")
