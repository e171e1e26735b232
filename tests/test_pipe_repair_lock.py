"""The repair lock names its holder by pid *and* start time, judged in its own namespace.

Repairs (reaping dead peers, aborting dead claims) run under one lock word in the pipe's
header. These tests forge holders in that word (offsets pinned by static_asserts in
csrc/pk_layout.h) and watch a 1:1 writer whose reader was SIGKILLed: it can report
``ReaderGoneError`` only after reaping the reader under the lock.
"""

from __future__ import annotations

import mmap
import os
import signal
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_pipe_support import CTX, PipeNames, attach_reader_and_hang, kill_and_reap, pipe_names

from pykernel import Pipe, PipeTimeout, ReaderGoneError

OWNER, PIDNS = 80, 100  # pk_hdr.repair_owner (u64), pk_hdr.repair_pidns (u32)
LOW24 = (1 << 24) - 1
BOUND = 5.0


@pytest.fixture
def names() -> Iterator[PipeNames]:
    with pipe_names() as n:
        yield n


def start_ticks(pid: int) -> int:
    """Field 22 of /proc/PID/stat: the process's start time in clock ticks."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[19])


def own_pidns() -> int:
    return os.stat("/proc/self/ns/pid").st_ino & 0xFFFFFFFF


class Header:
    """The lock fields of a pipe's header, mapped from /dev/shm."""

    def __init__(self, name: str) -> None:
        fd = os.open(f"/dev/shm/pykernel.{name}", os.O_RDWR)
        try:
            self._map = mmap.mmap(fd, 4096)
        finally:
            os.close(fd)

    def hold(self, pid: int, start: int, pidns: int, gen: int = 7) -> None:
        owner = gen << 48 | (start & LOW24) << 24 | (pid & LOW24)
        struct.pack_into("<Q", self._map, OWNER, owner)
        struct.pack_into("<I", self._map, PIDNS, pidns)

    @property
    def owner(self) -> int:
        return struct.unpack_from("<Q", self._map, OWNER)[0]

    def close(self) -> None:
        self._map.close()


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """A live process of ours whose pid a forged holder borrows."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def blocked_writer_test(names: PipeNames, forge, expect_gone: bool) -> int:  # type: ignore[no-untyped-def]
    """Fill a 1:1 pipe, kill its reader, forge the lock, try a send; return the lock word."""
    name = names()
    with Pipe.create(name, slot_size=16, slots=4) as pipe, pipe.writer() as w:
        attached = CTX.Event()
        proc = CTX.Process(target=attach_reader_and_hang, args=(name, attached))
        proc.start()
        header = Header(name)
        try:
            assert attached.wait(BOUND)
            for i in range(4):
                w.send(bytes([i]))
            os.kill(proc.pid, signal.SIGKILL)
            proc.join(BOUND)
            forge(header)
            if expect_gone:
                with pytest.raises(ReaderGoneError):
                    w.send(b"x", timeout=BOUND)
            else:
                with pytest.raises(PipeTimeout):
                    w.send(b"x", timeout=0.5)  # several liveness ticks: the lock held
            return header.owner
        finally:
            header.close()
            kill_and_reap(proc)


class TestRepairLockHolder:
    def test_a_reused_pid_does_not_keep_a_dead_holders_lock(
        self, names: PipeNames, bystander: subprocess.Popen[bytes]
    ) -> None:
        """Holder's pid alive but with another start time: the holder died, the lock is taken."""
        wrong = start_ticks(bystander.pid) + 1
        owner = blocked_writer_test(
            names, lambda h: h.hold(bystander.pid, wrong, own_pidns()), expect_gone=True
        )
        assert owner & ((1 << 48) - 1) == 0 and owner >> 48 == 8  # released, generation on

    def test_a_live_holder_keeps_the_lock_until_it_dies(
        self, names: PipeNames, bystander: subprocess.Popen[bytes]
    ) -> None:
        """Pid and start time match a live process: the lock is respected; then taken."""
        right = start_ticks(bystander.pid)
        owner = blocked_writer_test(
            names, lambda h: h.hold(bystander.pid, right, own_pidns()), expect_gone=False
        )
        assert owner & LOW24 == bystander.pid  # still the forged holder's

    def test_a_dead_holder_is_superseded(self, names: PipeNames) -> None:
        """A holder whose process is gone (a reaped child) loses the lock."""
        gone = subprocess.Popen(["true"])
        gone.wait()
        blocked_writer_test(names, lambda h: h.hold(gone.pid, 12345, own_pidns()), expect_gone=True)

    def test_a_holder_in_another_pid_namespace_is_not_judged(self, names: PipeNames) -> None:
        """Its pid means nothing here: even a pid that is free here does not free the lock."""
        gone = subprocess.Popen(["true"])
        gone.wait()
        other_ns = own_pidns() ^ 0x5A5A
        owner = blocked_writer_test(
            names, lambda h: h.hold(gone.pid, 12345, other_ns), expect_gone=False
        )
        assert owner & LOW24 == gone.pid

    def test_a_holder_without_its_namespace_yet_is_given_a_grace(self, names: PipeNames) -> None:
        """Namespace not published (0): busy for a grace, then judged, so a live holder of
        another namespace is not robbed at once and a dead one does not wedge repairs."""
        gone = subprocess.Popen(["true"])
        gone.wait()
        blocked_writer_test(names, lambda h: h.hold(gone.pid, 12345, 0), expect_gone=False)
        owner = blocked_writer_test(names, lambda h: h.hold(gone.pid, 12345, 0), expect_gone=True)
        assert owner & ((1 << 48) - 1) == 0  # taken after the grace, then released
