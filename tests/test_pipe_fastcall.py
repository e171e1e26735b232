"""The GIL-held fast path (pykernel._fastcall): used when it can finish, silent otherwise.

send/recv try it first; whatever must wait or fail goes to the full cffi call, which
counts and raises. These tests pin both halves: the fast path really carries the
messages, and it never does, counts or hides anything the full call would report.
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from test_pipe_support import PipeNames, pipe_names

from pykernel import (
    ClosedError,
    MessageSizeError,
    Pipe,
    PipeArgumentError,
    PipeEmpty,
    PipeFull,
    PipeTimeout,
    PykernelError,
    WriterGoneError,
    _fastcall,
    _pipe_reader,
    _pipe_writer,
)

EAGAIN, EBADF, EINVAL = -errno.EAGAIN, -errno.EBADF, -errno.EINVAL


@pytest.fixture
def names() -> Iterator[PipeNames]:
    with pipe_names() as n:
        yield n


def home(name: str) -> object:
    """The module whose end binds core call ``name`` (``_send``: the writer's ...)."""
    return _pipe_writer if hasattr(_pipe_writer, name) else _pipe_reader


def forbid(monkeypatch: pytest.MonkeyPatch, *calls: str) -> None:
    """Make these bound core calls of the writer/reader modules fail loudly if made."""
    for name in calls:

        def boom(*args: object, _name: str = name) -> int:
            raise AssertionError(f"{_name} was called")

        monkeypatch.setattr(home(name), name, boom)


@pytest.fixture
def no_full_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the full cffi send/recv fail loudly: only the fast path may carry messages."""
    forbid(monkeypatch, "_send", "_recv_len")


class TestFastPathCarries:
    @pytest.mark.parametrize("shape", ["one", "multiplexer", "combiner"])
    def test_send_and_recv_with_room_never_make_the_full_call(
        self, names: PipeNames, no_full_call: None, shape: str
    ) -> None:
        """Room and a message there: bytes, bytearray, memoryview and numpy all go fast."""
        with Pipe.create(names(), slot_size=64, slots=8, shape=shape) as p:
            w, r = p.writer(), p.reader()
            sent = [b"abc", bytearray(b"defg"), memoryview(b"hij"), np.arange(4, dtype=np.uint8)]
            for m in sent:
                w.send(m)
            assert [r.recv() for _ in sent] == [bytes(m) for m in sent]
            st = p.stats()
            assert (st.written, st.writers[0].full, st.readers[0].waits) == (4, 0, 0)

    def test_fast_and_full_calls_alternate_on_one_end(
        self, names: PipeNames, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Many laps of a small ring: full/empty turns go to the full call, order holds."""
        made = {"_send": 0, "_recv_len": 0}
        for name in made:
            real = getattr(home(name), name)

            def counted(*args: object, _real: object = real, _name: str = name) -> int:
                made[_name] += 1
                return _real(*args)  # type: ignore[operator]

            monkeypatch.setattr(home(name), name, counted)
        with Pipe.create(names(), slot_size=16, slots=4) as p:
            w, r = p.writer(), p.reader()
            got: list[int] = []
            for lap in range(500):
                for i in range(4):
                    w.send((4 * lap + i).to_bytes(4, "little"))
                with pytest.raises(PipeFull):
                    w.send(b"x", timeout=0)  # full: the full call refuses (and counts)
                got.extend(int.from_bytes(r.recv(), "little") for _ in range(4))
                with pytest.raises(PipeEmpty):
                    r.recv(timeout=0)  # empty: the full call says so
            assert got == list(range(2000))
            assert made == {"_send": 500, "_recv_len": 500}  # only the full/empty turns
            st = p.stats()
            assert (st.written, st.writers[0].full) == (2000, 500)

    def test_lossy_reader_overrun_is_left_to_the_full_call(self, names: PipeNames) -> None:
        """Lapped lossy reader: the try gives up after one lost copy; recv still resyncs."""
        with Pipe.create(names(), slot_size=8, slots=4, lossy=True) as p:
            w, r = p.writer(), p.reader()
            for i in range(10):  # laps the reader: the oldest messages are overwritten
                w.send(i.to_bytes(4, "little"))
            got: list[int] = []
            with pytest.raises(PipeEmpty):
                while True:
                    got.append(int.from_bytes(r.recv(timeout=0), "little"))
            assert got == list(range(10 - len(got), 10)) and len(got) + r.dropped == 10
            assert r.dropped > 0 and p.stats().readers[0].drops == r.dropped

    def test_python_buffer_classes_take_the_full_call(self, names: PipeNames) -> None:
        """A class defined in Python may run code to export its buffer: never in the try."""

        class Blob(bytearray):
            pass

        with Pipe.create(names(), slot_size=8, slots=4) as p:
            w, r = p.writer(), p.reader()
            assert _fastcall.send(w._hi, Blob(b"ab")) == EINVAL
            assert _fastcall.send(w._hi, bytearray(b"ab")) == 1
            w.send(Blob(b"cd"))
            assert [r.recv(), r.recv()] == [b"ab", b"cd"]


class TestFastPathStepsAside:
    def test_full_pipe_is_left_to_the_full_call_which_counts_once(self, names: PipeNames) -> None:
        """The try refuses without counting; the full call raises PipeFull and counts it."""
        with Pipe.create(names(), slot_size=8, slots=2) as p:
            w, r = p.writer(), p.reader()
            w.send(b"1")
            w.send(b"2")
            assert _fastcall.send(w._hi, b"3") == EAGAIN
            assert p.stats().writers[0].full == 0
            with pytest.raises(PipeFull):
                w.send(b"3", timeout=0)
            assert p.stats().writers[0].full == 1
            assert r.recv() == b"1"

    def test_empty_pipe_is_left_to_the_full_call(self, names: PipeNames) -> None:
        """Empty: the try says EAGAIN and the full call raises the typed error."""
        with Pipe.create(names(), slot_size=8, slots=2) as p:
            w, r = p.writer(), p.reader()
            assert _fastcall.recv(r._hi, r._bufi, r._fcap) == EAGAIN
            with pytest.raises(PipeEmpty):
                r.recv(timeout=0)
            assert p.stats().readers[0].waits == 0 and not w.closed

    def test_errors_keep_their_typed_messages(self, names: PipeNames) -> None:
        """Oversize, non-buffers, bad timeouts and closed ends fail as without the fast path."""
        with Pipe.create(names(), slot_size=8, slots=4) as p:
            w, r = p.writer(), p.reader()
            assert _fastcall.send(w._hi, b"123456789") == EAGAIN
            with pytest.raises(MessageSizeError, match="9 bytes exceeds slot size 8"):
                w.send(b"123456789")
            assert _fastcall.send(w._hi, "text") == EINVAL
            with pytest.raises(PipeArgumentError, match="bytes-like"):
                w.send("text")
            with pytest.raises(PipeArgumentError, match="timeout must be"):
                w.send(b"x", timeout=-1)  # refused although there is room
            w.send(b"x")
            with pytest.raises(PipeArgumentError, match="timeout must be"):
                r.recv(timeout=float("nan"))  # refused although a message is there
            assert r.recv() == b"x"
            w.close()
            r.close()
            assert (w._hi, r._hi) == (0, 0)
            assert _fastcall.send(w._hi, b"x") == EBADF
            assert _fastcall.recv(r._hi, r._bufi, r._fcap) == EBADF
            with pytest.raises(ClosedError):
                w.send(b"x")
            with pytest.raises(ClosedError):
                r.recv()

    def test_large_messages_take_the_full_call(self, names: PipeNames) -> None:
        """Above 64 KiB the copy runs with the GIL released: the fast path declines."""
        big = bytes(range(256)) * 257  # 65,792 bytes
        with Pipe.create(names(), slot_size=1 << 17, slots=2) as p:
            w, r = p.writer(), p.reader()
            assert _fastcall.send(w._hi, big) == EAGAIN
            w.send(big)
            assert r._fcap == 64 * 1024
            assert _fastcall.recv(r._hi, r._bufi, r._fcap) == -errno.EMSGSIZE
            assert r.recv() == big  # still queued for the full call

    def test_lossy_combiner_is_left_to_the_full_call(self, names: PipeNames) -> None:
        """A lossy combiner may have to wait for a slot's previous lap: never in the try."""
        with Pipe.create(names(), slot_size=8, slots=4, shape="combiner", lossy=True) as p:
            w, r = p.writer(), p.reader()
            assert _fastcall.send(w._hi, b"x") == EAGAIN
            w.send(b"x")
            assert r.recv() == b"x"

    def test_a_blocked_send_finishes_when_room_appears(self, names: PipeNames) -> None:
        """The full call's wait still works behind the try (another thread frees room)."""
        with Pipe.create(names(), slot_size=8, slots=2) as p:
            w, r = p.writer(), p.reader()
            w.send(b"1")
            w.send(b"2")
            assert _fastcall.send(w._hi, b"3") == EAGAIN
            got: list[bytes] = []

            def late_reader() -> None:
                time.sleep(0.3)  # well past the writer's 50 us spin: it must be asleep
                got.extend(r.recv(timeout=5) for _ in range(3))

            t = threading.Thread(target=late_reader)
            t.start()
            w.send(b"3", timeout=5)
            t.join(10)
            assert got == [b"1", b"2", b"3"]
            assert p.stats().writers[0].waits >= 1  # the send really slept in the full call

    def test_bind_refuses_nonsense(self) -> None:
        """bind takes eight non-null addresses."""
        with pytest.raises(ValueError, match="null function address"):
            _fastcall.bind(*[0] * 8)
        with pytest.raises(TypeError, match="takes 8 addresses"):
            _fastcall.bind(1)


class TestOneCopyRecv:
    """Big lossless slots: recv copies a large message once, from the slot via a view."""

    def test_large_messages_come_straight_from_the_slot(
        self, names: PipeNames, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """100 KiB and 1 MiB arrive intact without the copying call; small ones go fast."""
        forbid(monkeypatch, "_recv_len")
        msgs = [bytes([i]) * n for i, n in enumerate([100_000, 1 << 20, 10, 65_536, 65_537])]
        with Pipe.create(names(), slot_size=1 << 20, slots=4) as p:
            w, r = p.writer(), p.reader()
            assert r._one_copy
            for m in msgs:
                w.send(m)
                assert r.recv(timeout=5) == m
            st = p.stats()
            assert st.readers[0].messages == 5 and st.fill == 0

    def test_waits_and_errors_on_the_view_path(self, names: PipeNames) -> None:
        """Empty, timeout, a writer gone and an open view raise as on the copying path."""
        with Pipe.create(names(), slot_size=1 << 17, slots=2) as p:
            w, r = p.writer(), p.reader()
            with pytest.raises(PipeEmpty):
                r.recv(timeout=0)
            with pytest.raises(PipeTimeout):
                r.recv(timeout=0.05)
            w.send(b"a" * 70_000)
            w.send(b"b" * 70_000)
            with r.view() as v:
                with pytest.raises(PykernelError):
                    r.recv(timeout=0)  # a view is open: refused, nothing consumed
                assert bytes(v.buffer[:1]) == b"a"
            assert r.recv(timeout=1) == b"b" * 70_000
            w.close()
            with pytest.raises(WriterGoneError):
                r.recv(timeout=1)

    def test_lossy_big_pipes_keep_the_seqlock_copy(
        self, names: PipeNames, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A lossy slot may be overwritten under a view: recv keeps pk_recv's checked copy."""
        forbid(monkeypatch, "_view")
        with Pipe.create(names(), slot_size=1 << 17, slots=2, lossy=True) as p:
            w, r = p.writer(), p.reader()
            assert not r._one_copy
            w.send(b"z" * 100_000)
            assert r.recv(timeout=1) == b"z" * 100_000


class TestZeroCopyFastPath:
    """reserve/view hand out memoryviews over the slot with the GIL held; commit/release
    never wait. Full pipes, empty pipes and lossy combiners take the full calls."""

    @pytest.mark.parametrize("shape", ["one", "multiplexer", "combiner"])
    def test_zero_copy_with_room_never_makes_the_full_call(
        self, names: PipeNames, monkeypatch: pytest.MonkeyPatch, shape: str
    ) -> None:
        """Through buffers and numpy arrays, in all three shapes, many laps of a small ring."""
        forbid(monkeypatch, "_reserve", "_view")
        with Pipe.create(names(), slot_size=64, slots=4, shape=shape) as p:
            w, r = p.writer(), p.reader()
            for i in range(50):
                with w.reserve(16) as slot:
                    slot.array(np.uint32, 4)[:] = [i, i + 1, i + 2, i + 3]
                with r.view() as v:
                    assert v.array(np.uint32).tolist() == [i, i + 1, i + 2, i + 3]
                    assert not v.array(np.uint32).flags.writeable and v.buffer.readonly
            st = p.stats()
            assert (st.written, st.writers[0].full, st.readers[0].waits) == (50, 0, 0)

    def test_full_and_empty_take_the_full_calls(self, names: PipeNames) -> None:
        """Full: the try refuses, reserve(timeout=0) raises PipeFull; empty: PipeEmpty."""
        with Pipe.create(names(), slot_size=8, slots=2) as p:
            w, r = p.writer(), p.reader()
            assert _fastcall.view(r._hi) == EAGAIN
            with pytest.raises(PipeEmpty):
                r.view(timeout=0)
            w.send(b"1")
            w.send(b"2")
            assert _fastcall.reserve(w._hi, 8) == EAGAIN
            assert p.stats().writers[0].full == 0
            with pytest.raises(PipeFull):
                w.reserve(8, timeout=0)
            assert p.stats().writers[0].full == 1
            with r.view() as v:
                assert bytes(v.buffer) == b"1"

    def test_buffers_die_with_their_slot_and_view(self, names: PipeNames) -> None:
        """After commit/release the memoryviews over the ring are released: no stale access."""
        with Pipe.create(names(), slot_size=8, slots=2) as p:
            w, r = p.writer(), p.reader()
            slot = w.reserve(3)
            slot.buffer[:] = b"abc"
            buf = slot.buffer
            slot.commit()
            with pytest.raises(ValueError, match="released"):
                buf[0]
            view = r.view()
            vbuf = view.buffer
            assert bytes(vbuf) == b"abc" and view.nbytes == 3
            view.release()
            with pytest.raises(ValueError, match="released"):
                vbuf[0]

    def test_lossy_combiner_reserve_takes_the_full_call(self, names: PipeNames) -> None:
        """A lossy combiner may wait for a slot's previous lap: never in the try."""
        with Pipe.create(names(), slot_size=8, slots=4, shape="combiner", lossy=True) as p:
            w, r = p.writer(), p.reader()
            assert _fastcall.reserve(w._hi, 8) == EAGAIN
            with w.reserve(1) as slot:
                slot.buffer[:] = b"z"
            assert r.recv() == b"z"

    def test_closed_ends_are_refused(self, names: PipeNames) -> None:
        """A closed end (handle 0) is EBADF in the try and ClosedError from the API."""
        with Pipe.create(names(), slot_size=8, slots=2) as p:
            w, r = p.writer(), p.reader()
            w.close()
            r.close()
            assert _fastcall.reserve(w._hi, 1) == EBADF and _fastcall.view(r._hi) == EBADF
            assert _fastcall.commit(0, 1) == EBADF and _fastcall.release(0) == EBADF
            with pytest.raises(ClosedError):
                w.reserve(1)
            with pytest.raises(ClosedError):
                r.view()


class TestCloseWithOpenZeroCopy:
    def test_closing_an_end_releases_its_open_buffers(self, names: PipeNames) -> None:
        """An open slot's or view's buffer must not outlive the mapping it points into."""
        with Pipe.create(names(), slot_size=8, slots=2) as p:
            w, r = p.writer(), p.reader()
            slot = w.reserve(4)
            sbuf = slot.buffer
            w.close()
            with pytest.raises(ValueError, match="released"):
                sbuf[0]
            with pytest.raises(ClosedError):
                slot.commit()
            w2 = p.writer()
            w2.send(b"m")
            view = r.view()
            vbuf = view.buffer
            r.close()
            with pytest.raises(ValueError, match="released"):
                vbuf[0]
            with pytest.raises(ClosedError):
                view.release()
