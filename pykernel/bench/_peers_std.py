"""Standard-library peers: multiprocessing.Queue, multiprocessing.Pipe and os.pipe.

Point-to-point transports fan out by sending each frame on one link per reader, which is
what a user of them would do. Fan-in shares one queue (``Queue``), waits on every pipe
(``multiprocessing.Pipe``), or shares one pipe whose writes are atomic up to PIPE_BUF
(``os.pipe``).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import select
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from typing import Any

from pykernel.bench._errors import TransportError
from pykernel.bench._frames import Buffer
from pykernel.bench._transport import (
    ALL_CASES,
    Channel,
    FanoutSender,
    Link,
    QueueLink,
    Receiver,
    Sender,
    Transport,
)

_CTX = mp.get_context("fork")


# -- multiprocessing.Queue ---------------------------------------------------------------


class _QueueSender(Sender):
    def __init__(self, q: mp.queues.Queue) -> None:
        self._put = q.put

    wants_bytes = True

    def send(self, frame: bytearray) -> None:
        # Queue.put pickles later in its feeder thread: hand it an immutable copy.
        self._put(bytes(frame))

    def send_call(self) -> Callable[[Buffer], Any]:
        return self._put


class _QueueReceiver(Receiver):
    def __init__(self, q: mp.queues.Queue) -> None:
        self._get = q.get

    def recv(self) -> Buffer:
        return self._get()

    def recv_call(self) -> Callable[[], Buffer]:
        return self._get


class _QueueLink(QueueLink):
    def make(self) -> mp.queues.Queue:
        return _CTX.Queue(maxsize=self.channel.depth)

    def wrap_sender(self, queue: mp.queues.Queue) -> Sender:
        return _QueueSender(queue)

    def wrap_receiver(self, queue: mp.queues.Queue) -> Receiver:
        return _QueueReceiver(queue)

    def close(self) -> None:
        for q in self.queues:
            q.close()
            q.join_thread()


class MpQueue(Transport):
    """``multiprocessing.Queue`` (pickling, a feeder thread, a pipe and a lock)."""

    key = "mp-queue"
    label = "multiprocessing.Queue"
    cases = ALL_CASES

    link = _QueueLink


# -- multiprocessing.Pipe ------------------------------------------------------------------


class _ConnSender(Sender):
    def __init__(self, conn: Connection) -> None:
        self._send = conn.send_bytes

    def send(self, frame: bytearray) -> None:
        self._send(frame)


class _ConnReceiver(Receiver):
    def __init__(self, conn: Connection, size: int) -> None:
        self._buf = bytearray(size)
        self._view = memoryview(self._buf)
        self._into = conn.recv_bytes_into

    def recv(self) -> Buffer:
        n = self._into(self._buf)
        return self._view[:n]


class _ConnFaninReceiver(Receiver):
    """One reader, one pipe per writer: wait for any, read what is ready."""

    def __init__(self, conns: list[Connection], size: int) -> None:
        self._conns = conns
        self._ready: list[Connection] = []
        self._buf = bytearray(size)
        self._view = memoryview(self._buf)

    def recv(self) -> Buffer:
        while not self._ready:
            self._ready = list(wait(self._conns))
        n = self._ready.pop().recv_bytes_into(self._buf)
        return self._view[:n]


class _PipeLink(Link):
    def __init__(self, channel: Channel) -> None:
        n = channel.writers * channel.readers
        self._pairs = [_CTX.Pipe(duplex=False) for _ in range(n)]
        self._channel = channel

    def sender(self, index: int) -> Sender:
        if self._channel.shape == "fanout":
            return FanoutSender([_ConnSender(w) for _, w in self._pairs])
        return _ConnSender(self._pairs[index][1])

    def receiver(self, index: int) -> Receiver:
        size = self._channel.size
        if self._channel.shape == "fanin":
            return _ConnFaninReceiver([r for r, _ in self._pairs], size)
        return _ConnReceiver(self._pairs[index][0], size)

    def close(self) -> None:
        for r, w in self._pairs:
            r.close()
            w.close()


class MpPipe(Transport):
    """``multiprocessing.Pipe`` (a socketpair with length-prefixed messages)."""

    key = "mp-pipe"
    label = "multiprocessing.Pipe"
    cases = ALL_CASES

    link = _PipeLink


# -- os.pipe ---------------------------------------------------------------------------------


class _FdSender(Sender):
    def __init__(self, fd: int) -> None:
        self._fd = fd

    def send(self, frame: bytearray) -> None:
        view = memoryview(frame)
        while view:
            view = view[os.write(self._fd, view) :]


class _FdReceiver(Receiver):
    """Reads exactly one fixed-size frame per call (the pipe carries no framing)."""

    def __init__(self, fd: int, size: int) -> None:
        self._file = open(fd, "rb", buffering=0, closefd=False)  # noqa: SIM115 - lives with self
        self._buf = bytearray(size)
        self._view = memoryview(self._buf)
        self._size = size

    def recv(self) -> Buffer:
        got = 0
        while got < self._size:
            n = self._file.readinto(self._view[got:])
            if not n:
                raise TransportError("os.pipe: writer closed the pipe mid-stream")
            got += n
        return self._view


class _FdLink(QueueLink):
    """Fan-in writers share one pipe: each write of <= PIPE_BUF bytes is atomic."""

    def __init__(self, channel: Channel) -> None:
        if channel.shape == "fanin" and channel.size > select.PIPE_BUF:
            raise TransportError(
                f"os.pipe fan-in needs messages <= PIPE_BUF ({select.PIPE_BUF}), not {channel.size}"
            )
        super().__init__(channel)

    def make(self) -> tuple[int, int]:
        return os.pipe()

    def wrap_sender(self, queue: tuple[int, int]) -> Sender:
        return _FdSender(queue[1])

    def wrap_receiver(self, queue: tuple[int, int]) -> Receiver:
        return _FdReceiver(queue[0], self.channel.size)

    def close(self) -> None:
        for r, w in self.queues:
            os.close(r)
            os.close(w)


class OsPipe(Transport):
    """A bare ``os.pipe`` with fixed-size frames (no serialisation at all)."""

    key = "os-pipe"
    label = "os.pipe"
    cases = ALL_CASES

    link = _FdLink
