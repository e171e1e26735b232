"""The pykernel rows: one message per call, batched, packed, and zero-copy.

The parent creates each pipe (so its geometry is fixed before anyone forks) and closes
its own mapping; children open it by name. The parent unlinks it when the case ends.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable
from typing import Any

from pykernel.bench._frames import Buffer, Framer, Verifier
from pykernel.bench._transport import ALL_CASES, Channel, Link, Receiver, Sender, Transport

_SHAPES = {"one": "one", "fanout": "multiplexer", "fanin": "combiner"}
_BATCH = 128  # messages per send_batch: half of the default 256-slot ring
_PACKED_MAX = 1024  # messages per recv_packed at most (as for recv_batch)


def _api() -> Any:
    return importlib.import_module("pykernel")


class _PkSender(Sender):
    def __init__(self, pipe: Any) -> None:
        self._pipe = pipe
        self._w = pipe.writer()

    def send(self, frame: bytearray) -> None:
        self._w.send(frame)  # copies any buffer at once: the reused frame may go as is

    def send_call(self) -> Callable[[Buffer], Any]:
        return self._w.send

    def close(self) -> None:
        self._w.close()
        self._pipe.close()


class _PkReceiver(Receiver):
    def __init__(self, pipe: Any) -> None:
        self._pipe = pipe
        self._r = pipe.reader()
        self._recv = self._r.recv

    def recv(self) -> Buffer:
        return self._recv()

    def recv_call(self) -> Callable[[], Buffer]:
        return self._recv

    def close(self) -> None:
        self._r.close()
        self._pipe.close()


class _PkBatchSender(_PkSender):
    """Timed loop through ``send_batch``: many small messages per C call."""

    def send_stream(self, framer: Framer, count: int) -> None:
        send_batch = self._w.send_batch
        rows = framer.block_rows
        seq = 0
        while seq < count:
            k = min(_BATCH, count - seq)
            msgs = rows(seq, k)  # views of one reused block: no per-message objects
            while msgs:
                msgs = msgs[send_batch(msgs) :]
            seq += k


class _PkBatchReceiver(_PkReceiver):
    """Timed loop through ``recv_batch``, verified a batch at a time with numpy."""

    def recv_stream(self, verifier: Verifier) -> None:
        recv_batch = self._r.recv_batch
        check_many = verifier.check_many
        remaining = verifier.total - verifier.received
        while remaining:
            remaining -= check_many(recv_batch(max_messages=min(remaining + 8, 1024)))


class _PkPackedSender(_PkSender):
    """Timed loop through ``send_packed``: a numpy block of frames per C call."""

    def send_stream(self, framer: Framer, count: int) -> None:
        send_packed = self._w.send_packed
        block = framer.block
        size = framer.size
        seq = 0
        while seq < count:
            k = min(_BATCH, count - seq)
            data = block(seq, k)
            while len(data):
                data = data[send_packed(data, size) :]
            seq += k


class _PkPackedReceiver(_PkReceiver):
    """Timed loop through ``recv_packed`` into one reused buffer, verified per block."""

    def recv_stream(self, verifier: Verifier) -> None:
        buf = bytearray(_PACKED_MAX * verifier.size)
        lengths = bytearray(4 * _PACKED_MAX)  # native uint32 each
        recv_packed = self._r.recv_packed
        check_packed = verifier.check_packed
        remaining = verifier.total - verifier.received
        while remaining:
            remaining -= check_packed(buf, lengths, recv_packed(buf, lengths))


class _PkZeroCopySender(_PkSender):
    """Writes each message straight into a reserved slot."""

    def send_stream(self, framer: Framer, count: int) -> None:
        reserve = self._w.reserve
        frame = framer.frame
        size = framer.size
        for seq in range(count):
            with reserve(size) as slot:
                slot.buffer[:size] = frame(seq)


class _PkZeroCopyReceiver(_PkReceiver):
    """Checks each message in place through a read-only view of its slot."""

    def take(self, check: Callable[[Buffer], bool]) -> bool:
        with self._r.view() as v:
            return check(v.buffer)


class _PkLink(Link):
    def __init__(self, channel: Channel, sender: type[_PkSender], receiver: type[_PkReceiver]):
        api = _api()
        self._name = channel.name
        pipe = api.Pipe.create(
            channel.name,
            slot_size=channel.size,
            slots=channel.depth,
            shape=_SHAPES[channel.shape],
            max_readers=max(channel.readers, 1),
            max_writers=max(channel.writers, 1),
        )
        pipe.close()
        self._kinds = (sender, receiver)

    def sender(self, index: int) -> Sender:
        return self._kinds[0](_api().Pipe.open(self._name))

    def receiver(self, index: int) -> Receiver:
        return self._kinds[1](_api().Pipe.open(self._name))

    def close(self) -> None:
        api = _api()
        with contextlib.suppress(api.PipeNotFoundError):
            api.Pipe.unlink(self._name)


class _Pykernel(Transport):
    package = "pykernel"
    is_pykernel = True
    sender_kind: type[_PkSender] = _PkSender
    receiver_kind: type[_PkReceiver] = _PkReceiver

    def unavailable(self) -> str | None:
        """Return ``pipe core not built`` when pykernel has no ``Pipe`` yet."""
        try:
            api = _api()
        except ImportError:  # pragma: no cover - we are inside pykernel
            return "not installed"
        return None if hasattr(api, "Pipe") else "pipe core not built"

    def open(self, channel: Channel) -> Link:
        """Create the shared-memory pipe for this channel (0600, unique name)."""
        return _PkLink(channel, self.sender_kind, self.receiver_kind)


class PykernelPerCall(_Pykernel):
    """pykernel, one message per ``send``/``recv`` call, blocking waits."""

    key = "pykernel"
    label = "pykernel"
    cases = ALL_CASES


class PykernelBatch(_Pykernel):
    """pykernel, ``send_batch``/``recv_batch`` (many small messages per C call)."""

    key = "pykernel-batch"
    label = "pykernel batch"
    cases = frozenset({"oneway64", "oneway4k", "fanout64", "fanin64"})
    sender_kind = _PkBatchSender
    receiver_kind = _PkBatchReceiver


class PykernelPacked(_Pykernel):
    """pykernel, ``send_packed``/``recv_packed``: fixed-size frames end to end, no object each."""

    key = "pykernel-packed"
    label = "pykernel packed"
    cases = frozenset({"oneway64", "fanout64", "fanin64"})
    sender_kind = _PkPackedSender
    receiver_kind = _PkPackedReceiver


class PykernelZeroCopy(_Pykernel):
    """pykernel, ``reserve``/``view``: the message is written and checked in the slot."""

    key = "pykernel-zc"
    label = "pykernel zero-copy"
    cases = frozenset({"oneway4k", "oneway1m"})
    sender_kind = _PkZeroCopySender
    receiver_kind = _PkZeroCopyReceiver
