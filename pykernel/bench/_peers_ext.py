"""Peers from PyPI: faster-fifo and pyzmq (PAIR, PUB/SUB, PUSH/PULL over ipc://).

zmq and its sockets live only in the child processes; faster-fifo queues are made in the
parent (they must exist before fork). A missing package makes the row "not installed".
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pykernel.bench._frames import Buffer
from pykernel.bench._transport import (
    ALL_CASES,
    Channel,
    Link,
    QueueLink,
    Receiver,
    Sender,
    Transport,
)

_FOREVER = 1e6  # seconds; the harness's case timeout is the real bound
_PICKLE_SLACK = 64  # bytes per message faster-fifo adds (length + pickle header)

# -- faster-fifo -------------------------------------------------------------------------------


class _FifoSender(Sender):
    def __init__(self, q: Any) -> None:
        self._put = q.put

    def send(self, frame: bytearray) -> None:
        self._put(frame, True, _FOREVER)  # pickled at once: reusing the frame is safe


class _FifoReceiver(Receiver):
    def __init__(self, q: Any) -> None:
        self._get = q.get

    def recv(self) -> Buffer:
        return self._get(True, _FOREVER)

    def recv_call(self) -> Callable[[], Buffer]:
        return functools.partial(self._get, True, _FOREVER)


class _FifoLink(QueueLink):
    def make(self) -> Any:
        from faster_fifo import Queue

        return Queue(max_size_bytes=self.channel.depth * (self.channel.size + _PICKLE_SLACK))

    def wrap_sender(self, queue: Any) -> Sender:
        return _FifoSender(queue)

    def wrap_receiver(self, queue: Any) -> Receiver:
        return _FifoReceiver(queue)

    def close(self) -> None:
        for q in self.queues:
            q.close()


class FasterFifo(Transport):
    """faster-fifo: a shared-memory circular buffer with a process-shared mutex (pickles)."""

    key = "faster-fifo"
    label = "faster-fifo"
    package = "faster-fifo"
    module = "faster_fifo"
    cases = ALL_CASES

    link = _FifoLink


# -- pyzmq ---------------------------------------------------------------------------------------


class _ZmqEnd(Sender, Receiver):
    """One zmq socket in a child: a writer's or a reader's end."""

    def __init__(self, kind: str, endpoint: str, bind: bool, hwm: int) -> None:
        import zmq

        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(getattr(zmq, kind))
        self._sock.setsockopt(zmq.SNDHWM, hwm)
        self._sock.setsockopt(zmq.RCVHWM, hwm)
        self._sock.setsockopt(zmq.LINGER, 0)
        if kind == "SUB":
            self._sock.setsockopt(zmq.SUBSCRIBE, b"")
        if bind:
            self._sock.bind(endpoint)
        else:
            self._sock.connect(endpoint)
        self._send = self._sock.send
        self._recv = self._sock.recv

    def send(self, frame: bytearray) -> None:
        self._send(frame)  # copy=True (the default) copies before returning

    def send_call(self) -> Callable[[Buffer], Any]:
        return self._send

    def recv(self) -> Buffer:
        return self._recv()

    def recv_call(self) -> Callable[[], Buffer]:
        return self._recv

    def close(self) -> None:
        self._sock.close(linger=0)
        self._ctx.term()


class _ZmqLink(Link):
    """Sockets under a private temporary directory: ``ipc://DIR/NAME``."""

    def __init__(self, channel: Channel, writer_kind: str, reader_kind: str) -> None:
        self._dir = tempfile.mkdtemp(prefix="pykernel-bench-zmq-")
        self._endpoint = f"ipc://{Path(self._dir) / channel.name}"
        self._channel = channel
        self._kinds = (writer_kind, reader_kind)
        # PUB drops when its high-water mark is reached; the comparison is lossless, so
        # PUB/SUB runs unbounded. PAIR and PUSH block at the mark: they keep the depth.
        self._hwm = 0 if writer_kind == "PUB" else channel.depth
        # The side that is alone binds: the reader for 1:1 and fan-in, the writer for fan-out.
        self._writer_binds = channel.shape == "fanout"

    def sender(self, index: int) -> Sender:
        return _ZmqEnd(self._kinds[0], self._endpoint, self._writer_binds, self._hwm)

    def receiver(self, index: int) -> Receiver:
        return _ZmqEnd(self._kinds[1], self._endpoint, not self._writer_binds, self._hwm)

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


class _Zmq(Transport):
    package = "pyzmq"
    module = "zmq"
    writer_kind = ""
    reader_kind = ""

    def open(self, channel: Channel) -> Link:
        """Create the ipc:// endpoint's directory; sockets are made in the children."""
        return _ZmqLink(channel, self.writer_kind, self.reader_kind)


class ZmqPair(_Zmq):
    """pyzmq PAIR sockets over ipc:// (1:1)."""

    key = "zmq-pair"
    label = "pyzmq PAIR"
    writer_kind = reader_kind = "PAIR"
    cases = frozenset({"rtt64", "oneway64", "oneway4k", "oneway1m"})


class ZmqPubSub(_Zmq):
    """pyzmq PUB/SUB over ipc:// (fan-out)."""

    key = "zmq-pubsub"
    label = "pyzmq PUB/SUB"
    writer_kind, reader_kind = "PUB", "SUB"
    drops_until_joined = True
    cases = frozenset({"oneway64", "fanout64"})


class ZmqPushPull(_Zmq):
    """pyzmq PUSH/PULL over ipc:// (fan-in)."""

    key = "zmq-pushpull"
    label = "pyzmq PUSH/PULL"
    writer_kind, reader_kind = "PUSH", "PULL"
    cases = frozenset({"oneway64", "fanin64"})
