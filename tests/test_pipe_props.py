"""Property tests: the ring against a model across the 2^64 wrap, random geometry, bad
arguments, and fuzzed segment headers."""

from __future__ import annotations

import os
import re
import struct
from collections import deque

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_pipe_support import pipe_names

from pykernel import (
    GeometryError,
    Pipe,
    PipeEmpty,
    PipeError,
    PipeFull,
    PipeNameError,
    SegmentError,
    list_pipes,
)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
U64 = 1 << 64

geometries = st.fixed_dictionaries(
    {
        "slot_size": st.integers(1, 96),
        "slots": st.sampled_from([2, 4, 8, 16]),
        "initial_sequence": st.one_of(st.integers(U64 - 40, U64 - 1), st.integers(0, U64 - 1)),
    }
)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.integers(0, 200)),
        st.tuples(st.just("batch"), st.integers(1, 20)),
        st.tuples(st.just("reserve"), st.integers(0, 200)),
        st.tuples(st.just("recv"), st.just(0)),
        st.tuples(st.just("recv_batch"), st.integers(1, 20)),
        st.tuples(st.just("view"), st.just(0)),
    ),
    max_size=60,
)


def payload(counter: int, size: int) -> bytes:
    return (struct.pack("<I", counter) * (size // 4 + 1))[:size]


class TestRingModel:
    @SETTINGS
    @given(geo=geometries, script=ops)
    def test_fifo_matches_model_across_wrap(self, geo: dict, script: list) -> None:
        """Lossless 1:1: every call agrees with a bounded FIFO model, across 2^64."""
        with (
            pipe_names() as names,
            Pipe.create(names(), **geo) as pipe,
            pipe.writer() as w,
            pipe.reader() as r,
        ):
            model: deque[bytes] = deque()
            counter = 0
            size = geo["slot_size"]
            for op, arg in script:
                if op in ("send", "reserve"):
                    msg = payload(counter, arg % (size + 1))
                    counter += 1
                    full = len(model) == geo["slots"]
                    try:
                        if op == "send":
                            w.send_nowait(msg)
                        else:
                            with w.reserve(len(msg), timeout=0) as slot:
                                slot.buffer[:] = msg
                    except PipeFull:
                        assert full
                    else:
                        assert not full
                        model.append(msg)
                elif op == "batch":
                    msgs = [payload(counter + i, (counter + i) % (size + 1)) for i in range(arg)]
                    counter += arg
                    room = geo["slots"] - len(model)
                    if room == 0:
                        try:
                            w.send_batch(msgs, timeout=0)
                            raise AssertionError("a full pipe took a batch")
                        except PipeError:
                            pass
                    else:
                        assert w.send_batch(msgs, timeout=0) == min(room, arg)
                        model.extend(msgs[:room])
                elif op == "recv_batch":
                    if not model:
                        try:
                            r.recv_batch(arg, timeout=0)
                            raise AssertionError("an empty pipe gave a batch")
                        except PipeEmpty:
                            pass
                    else:
                        got = r.recv_batch(arg, timeout=0)
                        want = [model.popleft() for _ in range(min(arg, len(got)))]
                        assert got == want and len(got) >= 1
                else:
                    try:
                        if op == "recv":
                            got = r.recv_nowait()
                        else:
                            with r.view(timeout=0) as v:
                                got = bytes(v.buffer)
                    except PipeEmpty:
                        assert not model
                    else:
                        assert got == model.popleft()
            s = pipe.stats()
            assert s.fill == len(model)
            assert s.head == (geo["initial_sequence"] + s.written) % U64

    @SETTINGS
    @given(
        geo=geometries.filter(lambda g: g["slot_size"] >= 4),
        sends=st.lists(st.integers(0, 30), max_size=30),
        mode=st.sampled_from(["lossy", "multiplexer", "combiner"]),
    )
    def test_shapes_and_lossy_across_wrap(self, geo: dict, sends: list, mode: str) -> None:
        """Lossy readers see an increasing subsequence plus counted drops; multiplexer
        readers and combiner writers keep order, across the 2^64 wrap."""
        shape = "one" if mode == "lossy" else mode
        with (
            pipe_names() as names,
            Pipe.create(
                names(), shape=shape, lossy=mode == "lossy", max_readers=2, max_writers=2, **geo
            ) as pipe,
        ):
            writers = [pipe.writer()] + ([pipe.writer()] if mode == "combiner" else [])
            readers = [pipe.reader()] + ([pipe.reader()] if mode == "multiplexer" else [])
            sent: list[bytes] = []
            got: list[list[bytes]] = [[] for _ in readers]
            counter = 0
            for burst in sends:
                for _ in range(burst):
                    msg = struct.pack("<I", counter)
                    try:
                        writers[counter % len(writers)].send_nowait(msg)
                    except PipeFull:
                        assert mode != "lossy"
                        break
                    sent.append(msg)
                    counter += 1
                for i, r in enumerate(readers):
                    while True:
                        try:
                            got[i].extend(r.recv_batch(7, timeout=0))
                        except PipeEmpty:
                            break
            for i, r in enumerate(readers):
                if mode == "lossy":
                    nums = [struct.unpack("<I", m)[0] for m in got[i]]
                    assert nums == sorted(set(nums))
                    assert len(nums) + r.dropped == len(sent)
                else:
                    assert got[i] == sent


class TestGeometry:
    @SETTINGS
    @given(
        slot_size=st.integers(1, 70000),
        log_slots=st.integers(1, 12),
        shape=st.sampled_from(["one", "multiplexer", "combiner"]),
        lossy=st.booleans(),
        peers=st.integers(1, 64),
    )
    def test_roundtrip(
        self, slot_size: int, log_slots: int, shape: str, lossy: bool, peers: int
    ) -> None:
        """Any valid geometry is created, reopened identically, and sized to hold it."""
        with pipe_names() as names:
            name = names()
            with (
                Pipe.create(
                    name,
                    slot_size=slot_size,
                    slots=1 << log_slots,
                    shape=shape,
                    lossy=lossy,
                    max_readers=peers,
                    max_writers=peers,
                ) as p,
                Pipe.open(name) as q,
            ):
                assert (q.slot_size, q.slots, q.shape, q.lossy) == (
                    slot_size,
                    1 << log_slots,
                    shape,
                    lossy,
                )
                assert q.max_readers == (peers if shape == "multiplexer" else 1)
                assert q.max_writers == (peers if shape == "combiner" else 1)
                assert os.stat(f"/dev/shm/pykernel.{name}").st_size == p.size_bytes
                assert p.size_bytes >= (slot_size + 16) * (1 << log_slots)

    @SETTINGS
    @given(slots=st.integers(-5, 1 << 31).filter(lambda n: n < 2 or n & (n - 1)))
    def test_bad_slot_counts(self, slots: int) -> None:
        """Zero, negative, one and non-powers of two are refused before C."""
        with pytest.raises(GeometryError, match="slots must be"):
            Pipe.create("never-made", slots=slots)

    @SETTINGS
    @given(
        name=st.text(max_size=250).filter(lambda s: not re.fullmatch(r"[A-Za-z0-9_.-]{1,200}", s))
    )
    def test_bad_names(self, name: str) -> None:
        """Any name outside the alphabet or length is refused."""
        with pytest.raises(PipeNameError, match="bad pipe name"):
            Pipe.create(name)


class TestFuzzedHeader:
    @SETTINGS
    @given(offset=st.integers(0, 319), data=st.binary(min_size=1, max_size=16))
    def test_open_survives_corruption(self, offset: int, data: bytes) -> None:
        """A corrupted header gives a PipeError or a usable pipe, never a crash."""
        with pipe_names() as names:
            name = names()
            Pipe.create(name, slot_size=32, slots=4, shape="multiplexer", max_readers=4).close()
            with open(f"/dev/shm/pykernel.{name}", "r+b") as f:
                f.seek(offset)
                f.write(data[: 320 - offset])
            try:
                pipe = Pipe.open(name)
            except PipeError:
                pass
            else:
                with pipe:
                    pipe.stats()
            assert any(i.name == name for i in list_pipes())

    @SETTINGS
    @given(
        shape=st.sampled_from(["one", "multiplexer", "combiner"]),
        lossy=st.booleans(),
        patches=st.lists(
            st.tuples(st.integers(320, 4096 + 8 * 48 - 1), st.binary(min_size=1, max_size=8)),
            min_size=1,
            max_size=6,
        ),
    )
    def test_ends_survive_corrupted_records_and_slots(
        self, shape: str, lossy: bool, patches: list
    ) -> None:
        """Garbage in the records and slots gives errors or odd data, never a crash."""
        with pipe_names() as names:
            name = names()
            with (
                Pipe.create(
                    name,
                    slot_size=32,
                    slots=8,
                    shape=shape,
                    lossy=lossy,
                    max_readers=2,
                    max_writers=2,
                ) as p,
                p.writer() as w,
            ):
                w.send_batch([b"m%d" % i for i in range(5)], timeout=0)
            with open(f"/dev/shm/pykernel.{name}", "r+b") as f:
                for offset, data in patches:
                    f.seek(offset)
                    f.write(data)
            with Pipe.open(name) as p:
                for attempt in (p.reader, p.writer):
                    try:
                        end = attempt()
                    except PipeError:
                        continue
                    with end:
                        for _ in range(12):
                            try:
                                if hasattr(end, "recv_nowait"):
                                    end.recv_nowait()
                                else:
                                    end.send_nowait(b"x" * 32)
                            except PipeError:
                                pass
                p.stats()


def _receive_in_child(name: str, how: str) -> int:
    """Receive once from ``name`` in a forked child; its exit code says what happened.

    0: a SegmentError named the damage; 1: data came back; 2: another exception; a
    negative code: the child died of that signal (a read past the slot).
    """
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's outcome is its exit code
        code = 2
        try:
            with Pipe.open(name) as p, p.reader() as r:
                if how == "recv_into":
                    r.recv_into(bytearray(1 << 20), timeout=0)
                elif how == "recv_batch":
                    r.recv_batch(timeout=0)
                else:
                    r.recv(timeout=0)
            code = 1
        except SegmentError:
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


class TestCorruptLength:
    @SETTINGS
    @given(
        how=st.sampled_from(["recv", "recv_into", "recv_batch"]),
        length=st.integers(33, 0xFFFFFFFE),  # above the slot size, not the "aborted" mark
    )
    def test_a_length_beyond_the_slot_is_refused(self, how: str, length: int) -> None:
        """A published slot whose length exceeds the slot size raises SegmentError: no
        copy past the slot, whatever the caller's buffer holds (it used to read past it)."""
        with pipe_names() as names:
            name = names()
            with Pipe.create(name, slot_size=32, slots=2) as p, p.writer() as w:
                w.send(b"m")
                slot0 = p.size_bytes - 4096  # the header fills the first page
            with open(f"/dev/shm/pykernel.{name}", "r+b") as f:
                f.seek(slot0 + 8)  # the slot header: seq (u64), then len (u32)
                f.write(struct.pack("<I", length))
            assert _receive_in_child(name, how) == 0
