"""The pipe API in one process: lifecycle, errors, zero-copy, batches, stats, host listing."""

from __future__ import annotations

import json
import os
import pickle
import stat
import struct
from collections.abc import Iterator

import numpy as np
import pytest
from conftest import require_root
from test_pipe_support import (
    CTX,
    PipeNames,
    clean_as_nobody,
    create_racer,
    echo_from_pickled_pipe,
    kill_and_reap,
    pipe_names,
)

import pykernel
from pykernel import (
    ClosedError,
    GeometryError,
    MessageSizeError,
    Pipe,
    PipeArgumentError,
    PipeBusyError,
    PipeEmpty,
    PipeExistsError,
    PipeFull,
    PipeNameError,
    PipeNotFoundError,
    PipeTimeout,
    PykernelError,
    ReaderGoneError,
    SegmentError,
    WouldBlock,
    WriterGoneError,
    clean_pipes,
    list_pipes,
)
from pykernel.cli import main as cli_main


@pytest.fixture
def names() -> Iterator[PipeNames]:
    with pipe_names() as n:
        yield n


def shm_path(name: str) -> str:
    return f"/dev/shm/pykernel.{name}"


class TestExports:
    def test_contract_names_are_exported(self) -> None:
        """Every name of the API contract is importable from pykernel."""
        for name in (
            "Pipe",
            "Writer",
            "Reader",
            "PipeStats",
            "PipeInfo",
            "list_pipes",
            "clean_pipes",
            "PykernelError",
            "PipeError",
            "ClosedError",
            "PeerGoneError",
            "WriterGoneError",
            "ReaderGoneError",
            "PipeTimeout",
            "WouldBlock",
            "PipeFull",
            "PipeEmpty",
            "GeometryError",
            "SegmentError",
            "PipeExistsError",
            "PipeNotFoundError",
        ):
            assert name in pykernel.__all__ and hasattr(pykernel, name), name

    def test_error_tree(self) -> None:
        """Pipe errors hang under PykernelError as the module docstring draws them."""
        assert issubclass(pykernel.PipeError, PykernelError)
        assert issubclass(PipeFull, WouldBlock) and issubclass(PipeEmpty, WouldBlock)
        assert issubclass(WriterGoneError, pykernel.PeerGoneError)
        assert issubclass(ReaderGoneError, pykernel.PeerGoneError)
        assert issubclass(PipeTimeout, TimeoutError)
        assert issubclass(GeometryError, ValueError)
        assert issubclass(PipeExistsError, FileExistsError)
        assert issubclass(PipeNotFoundError, SegmentError)


class TestLifecycle:
    def test_create_open_attributes(self, names: PipeNames) -> None:
        """Open reads the geometry that create wrote."""
        name = names()
        with (
            Pipe.create(
                name, slot_size=100, slots=16, shape="multiplexer", lossy=True, max_readers=5
            ) as p,
            Pipe.open(name) as q,
        ):
            for attr in ("slot_size", "slots", "shape", "lossy", "max_readers", "max_writers"):
                assert getattr(p, attr) == getattr(q, attr)
            assert (q.slot_size, q.slots, q.shape, q.lossy) == (100, 16, "multiplexer", True)
            assert (q.max_readers, q.max_writers) == (5, 1)

    def test_mode_default_owner_only(self, names: PipeNames) -> None:
        """Segments are 0600 unless asked otherwise, whatever the umask."""
        a, b = names(), names()
        old = os.umask(0)
        try:
            Pipe.create(a).close()
            Pipe.create(b, mode=0o640).close()
        finally:
            os.umask(old)
        assert stat.S_IMODE(os.stat(shm_path(a)).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(shm_path(b)).st_mode) == 0o640

    def test_exists(self, names: PipeNames) -> None:
        """A second create fails unless exist_ok and the geometry matches."""
        name = names()
        with Pipe.create(name, slot_size=64, slots=8):
            with pytest.raises(PipeExistsError, match="already exists"):
                Pipe.create(name, slot_size=64, slots=8)
            with Pipe.create(name, slot_size=64, slots=8, exist_ok=True) as again:
                assert again.slots == 8
            with pytest.raises(GeometryError, match="exists with geometry"):
                Pipe.create(name, slot_size=64, slots=16, exist_ok=True)

    def test_concurrent_create_exist_ok(self, names: PipeNames) -> None:
        """Processes racing to create-or-open one pipe all end up with the same pipe."""
        name = names()
        go, results = CTX.Event(), CTX.Queue()
        procs = [CTX.Process(target=create_racer, args=(name, go, results)) for _ in range(4)]
        for p in procs:
            p.start()
        try:
            go.set()
            assert [results.get(timeout=30) for _ in procs] == [(32, 64)] * 4
        finally:
            for p in procs:
                kill_and_reap(p)

    def test_not_found(self, names: PipeNames) -> None:
        """Opening or unlinking a missing pipe names it."""
        with pytest.raises(PipeNotFoundError, match="'nothing-here' does not exist"):
            Pipe.open("nothing-here")
        with pytest.raises(PipeNotFoundError, match="does not exist"):
            Pipe.unlink("nothing-here")

    def test_close_closes_ends(self, names: PipeNames) -> None:
        """Closing the pipe closes its ends; using them raises ClosedError."""
        p = Pipe.create(names(), slot_size=16, slots=4)
        w, r = p.writer(), p.reader()
        p.close()
        p.close()
        assert w.closed and r.closed and p.closed
        with pytest.raises(ClosedError, match="closed"):
            w.send(b"x")
        with pytest.raises(ClosedError, match="closed"):
            r.recv_nowait()
        with pytest.raises(ClosedError, match="closed"):
            p.writer()

    def test_one_writer_one_reader(self, names: PipeNames) -> None:
        """A 1:1 pipe refuses a second live writer or reader."""
        with Pipe.create(names(), slot_size=16, slots=4) as p:
            w, r = p.writer(), p.reader()
            with pytest.raises(PipeBusyError, match="already has a live writer"):
                p.writer()
            with pytest.raises(PipeBusyError, match="already has a live reader"):
                p.reader()
            w.close()
            r.close()
            p.writer().close()  # the places are free again


class TestPickling:
    def test_pipe_pickles_by_name(self, names: PipeNames) -> None:
        """A Pipe passed to a spawned child is opened there by name."""
        with Pipe.create(names(), slot_size=16, slots=8) as p, p.writer() as w:
            results = CTX.Queue()
            proc = CTX.Process(target=echo_from_pickled_pipe, args=(p, results))
            proc.start()
            try:
                w.send(b"over there")
                assert results.get(timeout=30) == (p.name, 8, b"over there")
                proc.join(30)
            finally:
                kill_and_reap(proc)

    def test_ends_refuse_pickling(self, names: PipeNames) -> None:
        """Writers and readers say to pass the Pipe instead."""
        with Pipe.create(names(), slot_size=16, slots=8) as p, p.reader() as r:
            w = p.writer()
            with pytest.raises(TypeError, match="pass the Pipe"):
                pickle.dumps(w)
            with pytest.raises(TypeError, match="attach a reader"):
                pickle.dumps(r)


class TestBadArguments:
    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"slot_size": 0}, "slot_size must be an integer in 1.."),
            ({"slot_size": 2**31}, "slot_size must be"),
            ({"slots": 0}, "slots must be an integer in 2.."),
            ({"slots": 1}, "slots must be"),
            ({"slots": 24}, "slots must be a power of two, got 24"),
            ({"slots": 2.0}, "slots must be an integer"),
            ({"shape": "ring"}, "shape must be one of"),
            ({"lossy": 1}, "lossy must be True or False"),
            ({"max_readers": 0}, "max_readers must be"),
            ({"max_writers": 5000}, "max_writers must be"),
            ({"mode": 0o1777}, "mode must be permission bits"),
            ({"initial_sequence": -1}, "initial_sequence must be"),
        ],
    )
    def test_geometry(self, names: PipeNames, kwargs: dict, match: str) -> None:
        """Bad geometry is refused in Python with the field and value named."""
        name = names()
        with pytest.raises(GeometryError, match=match):
            Pipe.create(name, **kwargs)
        assert not os.path.exists(shm_path(name))

    @pytest.mark.parametrize("bad", ["", "a/b", "sp ace", "x" * 201, "é", None, "a\x00b"])
    def test_names(self, bad: object) -> None:
        """Names outside [A-Za-z0-9_.-]{1,200} are refused."""
        with pytest.raises(PipeNameError, match="bad pipe name"):
            Pipe.create(bad)  # type: ignore[arg-type]
        with pytest.raises(PipeNameError, match="bad pipe name"):
            Pipe.open(bad)  # type: ignore[arg-type]

    def test_message_sizes_and_timeouts(self, names: PipeNames) -> None:
        """Oversize messages, reservations and bad timeouts are refused before C."""
        with Pipe.create(names(), slot_size=8, slots=4) as p, p.writer() as w, p.reader() as r:
            with pytest.raises(MessageSizeError, match="9 bytes exceeds slot size 8"):
                w.send(b"123456789")
            with pytest.raises(MessageSizeError, match="message 1 of 9 bytes"):
                w.send_batch([b"ok", b"123456789"])
            with pytest.raises(MessageSizeError, match="reserve of 9 bytes"):
                w.reserve(9)
            with pytest.raises(PipeArgumentError, match="timeout must be"):
                w.send(b"x", timeout=-1)
            with pytest.raises(PipeArgumentError, match="timeout must be"):
                r.recv(timeout=float("nan"))
            with pytest.raises(PipeArgumentError, match="bytes-like"):
                w.send("text")  # type: ignore[arg-type]
            with pytest.raises(PipeArgumentError, match="max_messages"):
                r.recv_batch(0)
            assert r.recv_nowait.__doc__ and p.stats().written == 0


class TestTransfer:
    def test_send_recv_order_and_sizes(self, names: PipeNames) -> None:
        """Messages of 0..slot_size bytes arrive in order, byte for byte."""
        with Pipe.create(names(), slot_size=33, slots=8) as p, p.writer() as w, p.reader() as r:
            for n in range(34):
                w.send(bytes(range(n)))
                assert r.recv() == bytes(range(n))

    def test_buffer_protocol_inputs(self, names: PipeNames) -> None:
        """bytearray, memoryview and numpy arrays are sent as their bytes."""
        with Pipe.create(names(), slot_size=64, slots=8) as p, p.writer() as w, p.reader() as r:
            arr = np.arange(4, dtype=np.float64)
            for data in (bytearray(b"ab"), memoryview(b"cd"), arr):
                w.send(data)
            assert r.recv() == b"ab" and r.recv() == b"cd"
            assert r.recv() == arr.tobytes()

    def test_full_and_empty(self, names: PipeNames) -> None:
        """Non-blocking calls raise PipeFull/PipeEmpty; blocking ones time out."""
        with Pipe.create(names(), slot_size=8, slots=4) as p, p.writer() as w, p.reader() as r:
            with pytest.raises(PipeEmpty, match="is empty"):
                r.recv_nowait()
            with pytest.raises(PipeTimeout, match=r"nothing arrived within 0\.01 s"):
                r.recv(timeout=0.01)
            for i in range(4):
                w.send_nowait(bytes([i]))
            with pytest.raises(PipeFull, match="is full"):
                w.send_nowait(b"x")
            with pytest.raises(PipeTimeout, match="nothing sent"):
                w.send(b"x", timeout=0.01)
            assert [r.recv_nowait() for _ in range(4)] == [b"\0", b"\1", b"\2", b"\3"]
            assert p.stats().writers[0].full == 2

    def test_recv_into(self, names: PipeNames) -> None:
        """recv_into copies into a caller buffer; a small buffer keeps the message queued."""
        with Pipe.create(names(), slot_size=16, slots=4) as p, p.writer() as w, p.reader() as r:
            w.send(b"0123456789")
            small = bytearray(4)
            with pytest.raises(MessageSizeError, match="smaller than the next message"):
                r.recv_into(small)
            big = bytearray(16)
            assert r.recv_into(big) == 10 and big[:10] == b"0123456789"
            with pytest.raises(PipeArgumentError, match="writable buffer"):
                r.recv_into(b"read-only")

    def test_recv_into_small_buffer_keeps_lossy_messages(self, names: PipeNames) -> None:
        """In lossy mode too, a buffer smaller than the message raises and loses nothing."""
        with (
            Pipe.create(names(), slot_size=16, slots=4, lossy=True) as p,
            p.writer() as w,
            p.reader() as r,
        ):
            w.send(b"0123456789")
            w.send(b"abcdefghij")
            with pytest.raises(MessageSizeError, match="smaller than the next message"):
                r.recv_into(bytearray(4), timeout=5)  # it dropped all and waited forever
            assert r.recv() == b"0123456789" and r.recv() == b"abcdefghij"
            assert r.dropped == 0

    def test_batches(self, names: PipeNames) -> None:
        """send_batch/recv_batch move many messages per call, wrapping the ring."""
        with Pipe.create(names(), slot_size=16, slots=8) as p, p.writer() as w, p.reader() as r:
            msgs = [str(i).encode() for i in range(6)]
            for _ in range(5):
                assert w.send_batch(msgs) == 6
                assert r.recv_batch(4) == msgs[:4]
                assert r.recv_batch(100) == msgs[4:]
            assert w.send_batch([]) == 0
            assert w.send_batch([b"x"] * 20, timeout=0) == 8  # only what fits
            assert len(r.recv_batch(100, timeout=0)) == 8

    def test_batches_of_equal_sizes_and_arrays(self, names: PipeNames) -> None:
        """Equal-sized batches (the strided fast path) and numpy messages keep their bytes."""
        with Pipe.create(names(), slot_size=64, slots=512) as p, p.writer() as w, p.reader() as r:
            msgs = [bytes([i % 256]) * 64 for i in range(300)]
            assert w.send_batch(msgs) == 300
            assert r.recv_batch(1000) == msgs
            arrays = [np.full(3, i, dtype=np.float64) for i in range(3)]
            assert w.send_batch(arrays) == 3
            assert r.recv_batch(10) == [a.tobytes() for a in arrays]
            with pytest.raises(PipeArgumentError, match="bytes-like messages"):
                w.send_batch(["text"])  # type: ignore[list-item]

    def test_packed_batches(self, names: PipeNames) -> None:
        """send_packed/recv_packed move fixed-size rows with no per-message objects."""
        with Pipe.create(names(), slot_size=16, slots=64) as p, p.writer() as w, p.reader() as r:
            rows = np.arange(40 * 4, dtype=np.uint32).reshape(40, 4)  # 40 messages of 16 B
            assert w.send_packed(rows, 16) == 40
            buf = np.zeros((64, 4), dtype=np.uint32)
            lens = np.zeros(64, dtype=np.uint32)
            n = r.recv_packed(buf, lens)
            assert n == 40 and (lens[:n] == 16).all()
            assert np.array_equal(buf[:n], rows)
            assert w.send_packed(b"", 8) == 0
            with pytest.raises(PipeArgumentError, match="not a whole number of 16-byte"):
                w.send_packed(b"x" * 20, 16)
            with pytest.raises(MessageSizeError, match="packed message size 17"):
                w.send_packed(b"x" * 17, 17)
            with pytest.raises(PipeEmpty):
                r.recv_packed(buf, lens, timeout=0)
            w.send(b"x" * 16)
            with pytest.raises(MessageSizeError, match="smaller than the next message"):
                r.recv_packed(bytearray(8), lens)
            with pytest.raises(PipeArgumentError, match="writable"):
                r.recv_packed(b"read-only", lens)

    def test_reserve_commit_numpy(self, names: PipeNames) -> None:
        """A reserved slot is filled through numpy and arrives as one message."""
        with Pipe.create(names(), slot_size=4096, slots=4) as p, p.writer() as w, p.reader() as r:
            with w.reserve(4096) as slot:
                slot.array(np.float32, (32, 32))[:] = np.eye(32, dtype=np.float32)
            with r.view() as v:
                got = v.array(np.float32, (32, 32))
                assert np.array_equal(got, np.eye(32, dtype=np.float32))
                assert not got.flags.writeable
            assert v.valid

    def test_reserve_abort_and_partial_commit(self, names: PipeNames) -> None:
        """An exception in the with-block aborts; commit(n) publishes n bytes."""
        with Pipe.create(names(), slot_size=64, slots=4) as p, p.writer() as w, p.reader() as r:
            with pytest.raises(RuntimeError), w.reserve() as slot:
                slot.buffer[:3] = b"bad"
                raise RuntimeError("boom")
            slot = w.reserve()
            slot.buffer[:5] = b"hello"
            slot.commit(5)
            with pytest.raises(ClosedError, match="already committed"):
                slot.commit()
            assert r.recv_nowait() == b"hello"
            with pytest.raises(PipeEmpty):
                r.recv_nowait()
            with pytest.raises(MessageSizeError, match=r"does not fit|needs"):
                w.reserve(8).array(np.float64, 2)

    def test_view_is_zero_copy(self, names: PipeNames) -> None:
        """A view refers to the ring itself: the slot is only freed by release."""
        with Pipe.create(names(), slot_size=8, slots=2) as p, p.writer() as w, p.reader() as r:
            w.send(b"a")
            w.send(b"b")
            v = r.view()
            assert bytes(v.buffer) == b"a"
            with pytest.raises(PipeFull):
                w.send_nowait(b"c")
            with pytest.raises(PipeArgumentError, match="view is still open"):
                r.view()
            assert v.release() is True
            w.send_nowait(b"c")
            with pytest.raises(ClosedError, match="already released"):
                v.release()

    def test_one_reader_resumes(self, names: PipeNames) -> None:
        """In a 1:1 pipe messages wait for a reader, and a new reader resumes the old one."""
        with Pipe.create(names(), slot_size=8, slots=8) as p, p.writer() as w:
            w.send(b"1")
            w.send(b"2")
            with p.reader() as r:
                assert r.recv_nowait() == b"1"
            with p.reader() as r:
                assert r.recv_nowait() == b"2"

    def test_writer_gone_after_clean_close(self, names: PipeNames) -> None:
        """A reader drains what is left, then learns the writer is gone."""
        with Pipe.create(names(), slot_size=8, slots=8) as p, p.reader() as r:
            with pytest.raises(PipeTimeout):
                r.recv(timeout=0.05)  # no writer yet: that is not "gone"
            with p.writer() as w:
                w.send(b"last")
            assert r.recv(timeout=1) == b"last"
            with pytest.raises(WriterGoneError, match="no writer is left"):
                r.recv(timeout=5)

    def test_reader_gone_when_full(self, names: PipeNames) -> None:
        """A writer with a full pipe and a departed reader gets ReaderGoneError."""
        with Pipe.create(names(), slot_size=8, slots=2) as p, p.writer() as w:
            p.reader().close()
            w.send(b"1")
            w.send(b"2")
            with pytest.raises(ReaderGoneError, match="reader is gone"):
                w.send(b"3", timeout=5)


class TestMultiplexerAndCombinerInProcess:
    def test_late_reader_starts_at_head(self, names: PipeNames) -> None:
        """A multiplexer's new reader sees only what is written after it attached."""
        with Pipe.create(names(), slot_size=8, slots=4, shape="multiplexer") as p, p.writer() as w:
            for i in range(10):
                w.send_nowait(bytes([i]))  # no readers: nothing limits the writer
            a = p.reader()
            w.send(b"x")
            b = p.reader()
            w.send(b"y")
            assert [a.recv_nowait(), a.recv_nowait()] == [b"x", b"y"]
            assert b.recv_nowait() == b"y"
            with pytest.raises(PipeFull):
                for _ in range(5):
                    w.send_nowait(b"z")  # a and b hold the writer back
            a.close()
            b.close()
            w.send_nowait(b"free")

    def test_many_writers_in_combiner(self, names: PipeNames) -> None:
        """Several combiner writers interleave; each writer's order is kept."""
        with (
            Pipe.create(names(), slot_size=16, slots=8, shape="combiner", max_writers=3) as p,
            p.reader() as r,
        ):
            ws = [p.writer() for _ in range(3)]
            with pytest.raises(PipeBusyError, match="every writer place is taken"):
                p.writer()
            for i in range(4):
                for k, w in enumerate(ws):
                    w.send(struct.pack("<II", k, i))
                got = [struct.unpack("<II", m) for m in r.recv_batch(100)]
                assert got == [(k, i) for k in range(3)]
            assert [s.index for s in p.stats().writers] == [0, 1, 2]

    def test_lossy_overwrites_and_counts(self, names: PipeNames) -> None:
        """A lossy writer never blocks; the reader resyncs and counts its drops."""
        with (
            Pipe.create(names(), slot_size=8, slots=4, lossy=True) as p,
            p.writer() as w,
            p.reader() as r,
        ):
            for i in range(10):
                w.send_nowait(struct.pack("<I", i))
            got = [struct.unpack("<I", m)[0] for m in r.recv_batch(100)]
            assert got == sorted(got) and got[-1] == 9
            assert len(got) + r.dropped == 10 and r.dropped > 0
            assert p.stats().readers[0].drops == r.dropped


class TestStatsAndHost:
    def test_stats(self, names: PipeNames) -> None:
        """Counters per pipe, reader and writer; fill is what waits."""
        with Pipe.create(names(), slot_size=8, slots=8) as p, p.writer() as w, p.reader() as r:
            w.send_batch([b"ab"] * 5)
            r.recv()
            s = p.stats()
            assert (s.written, s.written_bytes, s.fill, s.slots) == (5, 10, 4, 8)
            assert s.writers[0].pid == os.getpid() and s.writers[0].alive
            assert (s.writers[0].messages, s.writers[0].bytes) == (5, 10)
            assert (s.readers[0].messages, s.readers[0].bytes) == (1, 2)
            json.dumps(s.to_dict())

    def test_list_and_clean(self, names: PipeNames) -> None:
        """list_pipes shows every pipe; clean_pipes spares live ones, removes stale ones."""
        live, stale, junk = names("live"), names("stale"), names("junk")
        with Pipe.create(live, slot_size=8, slots=2) as p:
            Pipe.create(stale, slot_size=8, slots=2).close()
            with open(shm_path(junk), "wb") as f:
                f.write(b"not a pipe" * 100)
            # The stale pipe's creator is "dead": rewrite its creator pid to one that is not.
            with open(shm_path(stale), "r+b") as f:
                f.seek(52)
                f.write(struct.pack("<i", 2**31 - 2))
            infos = {i.name: i for i in list_pipes()}
            assert infos[live].in_use and infos[live].creator_pid == os.getpid()
            assert not infos[stale].in_use
            assert "not a pykernel pipe" in (infos[junk].error or "")
            removed = clean_pipes()
            assert stale in removed and live not in removed and junk not in removed
            assert os.path.exists(shm_path(live)) and not os.path.exists(shm_path(stale))
            assert p.stats().written == 0

    def test_clean_skips_what_it_may_not_remove(self, names: PipeNames) -> None:
        """Another user's stale pipe in sticky /dev/shm is skipped, not a crash."""
        require_root()
        name = names("foreign")
        Pipe.create(name, slot_size=8, slots=2, mode=0o666).close()
        with open(shm_path(name), "r+b") as f:  # its creator is "dead"
            f.seek(52)
            f.write(struct.pack("<i", 2**31 - 2))
        results = CTX.Queue()
        proc = CTX.Process(target=clean_as_nobody, args=(results,))
        proc.start()
        try:
            removed = results.get(timeout=30)
        finally:
            kill_and_reap(proc)
        assert isinstance(removed, list) and name not in removed
        assert os.path.exists(shm_path(name))

    def test_cli(self, names: PipeNames, capsys: pytest.CaptureFixture[str]) -> None:
        """pykernel pipes list/show/clean print tables or JSON; errors are one line."""
        name = names()
        with Pipe.create(name, slot_size=8, slots=2) as p, p.writer() as w:
            w.send(b"x")
            assert cli_main(["pipes", "list", "--json"]) == 0
            rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
            assert rows[name]["written"] == 1 and rows[name]["in_use"]
            assert cli_main(["pipes", "show", name]) == 0
            assert "writer 0: pid" in capsys.readouterr().out
            assert cli_main(["pipes", "show", name, "--json"]) == 0
            assert json.loads(capsys.readouterr().out)["stats"]["written"] == 1
            assert cli_main(["pipes", "list"]) == 0
            assert name in capsys.readouterr().out
            assert cli_main(["pipes", "clean", "--json"]) == 0
            assert name not in json.loads(capsys.readouterr().out)["removed"]
        assert cli_main(["pipes", "show", "no-such-pipe"]) == 1
        assert capsys.readouterr().err.strip() == ("pykernel: pipe 'no-such-pipe' does not exist")


class TestSegmentValidation:
    def _patch(self, name: str, offset: int, data: bytes) -> None:
        with open(shm_path(name), "r+b") as f:
            f.seek(offset)
            f.write(data)

    def test_bad_magic(self, names: PipeNames) -> None:
        """A segment without the magic is refused as not a pipe."""
        name = names()
        Pipe.create(name, slot_size=8, slots=2).close()
        self._patch(name, 0, b"NOTAPIPE")
        with pytest.raises(SegmentError, match="not a pykernel pipe"):
            Pipe.open(name)

    def test_abi_mismatch(self, names: PipeNames) -> None:
        """Another ABI version is refused with a clear message."""
        name = names()
        Pipe.create(name, slot_size=8, slots=2).close()
        self._patch(name, 8, struct.pack("<I", 99))
        with pytest.raises(SegmentError, match=r"incompatible pykernel \(ABI version"):
            Pipe.open(name)

    def test_geometry_mismatch(self, names: PipeNames) -> None:
        """A header whose geometry does not match the file size is refused."""
        name = names()
        Pipe.create(name, slot_size=8, slots=2).close()
        self._patch(name, 32, struct.pack("<I", 4096))  # slots: 2 -> 4096
        with pytest.raises(GeometryError, match="does not match its size"):
            Pipe.open(name)

    def test_truncated_and_empty(self, names: PipeNames) -> None:
        """A short file is not a pipe; an empty one is still being created."""
        short, empty = names(), names()
        with open(shm_path(short), "wb") as f:
            f.write(b"\0" * 100)
        open(shm_path(empty), "wb").close()
        with pytest.raises(SegmentError, match="not a pykernel pipe"):
            Pipe.open(short)
        with pytest.raises(SegmentError, match="still being created"):
            Pipe.open(empty)

    def test_close_before_end_is_memory_safe(self, names: PipeNames) -> None:
        """In C, an end keeps the mapping alive after its pipe handle is closed."""
        from pykernel._core import ffi, lib

        name = names()
        pp, wp = ffi.new("pk_pipe **"), ffi.new("pk_writer **")
        g = ffi.new(
            "pk_geometry *",
            {
                "slot_size": 8,
                "slots": 2,
                "shape": 0,
                "flags": 0,
                "max_readers": 1,
                "max_writers": 1,
                "start_pos": 0,
            },
        )
        assert lib.pk_pipe_create(f"/pykernel.{name}".encode(), g, 0o600, pp) == 0
        assert lib.pk_writer_attach(pp[0], wp) == 0
        lib.pk_pipe_close(pp[0])
        assert lib.pk_send(wp[0], b"ok", 2, 0) == 1  # still mapped
        lib.pk_writer_detach(wp[0])  # the last reference: unmapped here
        with Pipe.open(name) as p, p.reader() as r:
            assert r.recv_nowait() == b"ok"

    def test_no_room(self, names: PipeNames) -> None:
        """A pipe larger than /dev/shm's free space is refused before mapping."""
        name = names()
        free = os.statvfs("/dev/shm").f_bavail * os.statvfs("/dev/shm").f_frsize
        slots = 1 << max(1, (free // (1 << 30) + 1).bit_length() + 1)
        with pytest.raises(SegmentError, match="free"):
            Pipe.create(name, slot_size=(1 << 30), slots=slots)
        assert not os.path.exists(shm_path(name))
        with pytest.raises(SegmentError, match="needs 1152921"):  # 2^30 x 1 GiB
            Pipe.create(name, slot_size=(1 << 30), slots=1 << 30)
