"""What each child process does: attach, warm up, wait for the start, run, report.

Every child reports one dict through its result pipe: raw timestamps
(``time.perf_counter_ns``, CLOCK_MONOTONIC, comparable across processes) and the message
count, or ``{"error": ...}``. The parent turns them into numbers (``_stats``).

Warm-up protocol: each writer sends a warm-up frame and waits for every reader to
acknowledge it in a shared flag array; readers discard warm-up frames. Where early
messages may be dropped (PUB/SUB's "slow joiner"), the writer repeats the frame every
millisecond until acknowledged. Channels are warmed in order, so a ping-pong pair cannot
deadlock.
"""

from __future__ import annotations

import gc
import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import IO, Any

from pykernel.bench._cases import Case
from pykernel.bench._errors import TransportError
from pykernel.bench._frames import Framer, Verifier
from pykernel.bench._hang import arm
from pykernel.bench._transport import Link, Receiver, Sender

_ACK_POLL_S = 0.001


@dataclass(frozen=True)
class End:
    """One end a child holds: channel index, ``w`` or ``r``, and its index on that side."""

    channel: int
    side: str
    index: int


@dataclass(frozen=True)
class Role:
    """A child process: its name in reports, the ends it holds, the core it is pinned to."""

    name: str
    kind: str  # client | echo | writer | reader
    ends: tuple[End, ...]
    cpu: int | None


@dataclass
class Sync:
    """Shared synchronisation objects (created by the parent, inherited by fork)."""

    start: Any  # Barrier: every end attached
    go: Any  # Barrier: warm-up done, start the clock
    done: Any  # Barrier: timed part done, ends may close
    acks: Sequence[Any]  # per channel: flags [reader * writers + writer]
    timeout: float
    repeat_warmup: bool = False


def child_main(
    role: Role,
    case: Case,
    count: int,
    links: Sequence[Link],
    sync: Sync,
    conn: Connection,
    dump: IO[bytes],
) -> None:
    """Run ``role`` of ``case`` and send the result (or the error) through ``conn``.

    ``dump`` receives this process's stack if the parent asks (see ``_hang``).
    """
    try:
        arm(dump)
        if role.cpu is not None:
            os.sched_setaffinity(0, {role.cpu})
        gc.disable()  # same for every transport: no collector pauses in the timed loops
        result = _run(role, case, count, links, sync)
    except BaseException as exc:
        last = traceback.extract_tb(exc.__traceback__)[-1:]
        where = f" at {last[0].name}:{last[0].lineno}" if last else ""
        result = {"error": f"{role.name}: {type(exc).__name__}: {exc}{where}"}
    conn.send(result)
    conn.close()


def _run(role: Role, case: Case, count: int, links: Sequence[Link], sync: Sync) -> dict:
    senders: dict[int, Sender] = {}
    receivers: dict[int, Receiver] = {}
    verifiers: dict[int, Verifier] = {}
    framers: dict[int, Framer] = {}
    for end in role.ends:
        link = links[end.channel]
        if end.side == "w":
            senders[end.channel] = link.sender(end.index)
            framers[end.channel] = Framer(case.size, end.index)
        else:
            receivers[end.channel] = link.receiver(end.index)
            verifiers[end.channel] = Verifier(case.size, case.writers, count)
    try:
        sync.start.wait(sync.timeout)
        for end in role.ends:
            if end.side == "w":
                _warm_writer(
                    senders[end.channel],
                    framers[end.channel],
                    end,
                    sync,
                    sync.acks[end.channel],
                    case.readers,
                    case.writers,
                )
            else:
                _warm_reader(
                    receivers[end.channel],
                    verifiers[end.channel],
                    end,
                    sync.acks[end.channel],
                    case.writers,
                )
        sync.go.wait(sync.timeout)
        result = _timed(role, count, senders, receivers, framers, verifiers)
        sync.done.wait(sync.timeout)
    finally:
        for s in senders.values():
            s.close()
        for r in receivers.values():
            r.close()
    return result


def _warm_writer(
    sender: Sender, framer: Framer, end: End, sync: Sync, acks: Any, readers: int, writers: int
) -> None:
    deadline = time.monotonic() + sync.timeout
    flags = [r * writers + end.index for r in range(readers)]
    sender.send(framer.warm())
    resend = time.monotonic() + _ACK_POLL_S
    while not all(acks[i] for i in flags):
        now = time.monotonic()
        if now > deadline:
            raise TransportError(
                f"writer {end.index}: no reader saw the warm-up in {sync.timeout}s"
            )
        if sync.repeat_warmup and now > resend:
            sender.send(framer.warm())
            resend = now + _ACK_POLL_S
        time.sleep(_ACK_POLL_S / 10)


def _warm_reader(receiver: Receiver, verifier: Verifier, end: End, acks: Any, writers: int) -> None:
    base = end.index * writers
    while not all(verifier.warm_seen):
        receiver.take(verifier.check)
        for w, seen in enumerate(verifier.warm_seen):
            if seen:
                acks[base + w] = 1


def _timed(
    role: Role,
    count: int,
    senders: dict[int, Sender],
    receivers: dict[int, Receiver],
    framers: dict[int, Framer],
    verifiers: dict[int, Verifier],
) -> dict:
    clock = time.perf_counter_ns
    if role.kind == "client":  # ping-pong: write on channel 0, read the echo on channel 1
        return {"samples": _ping(senders[0], framers[0], receivers[1], verifiers[1], count)}
    if role.kind == "echo":
        _echo(receivers[0], verifiers[0], senders[1], framers[1], count)
        return {}
    if role.kind == "writer":
        (ch,) = senders
        t0 = clock()
        senders[ch].send_stream(framers[ch], count)
        return {"t0": t0, "t1": clock(), "sent": count}
    (ch,) = receivers
    t0 = clock()
    receivers[ch].recv_stream(verifiers[ch])
    t1 = clock()
    verifiers[ch].finish()
    return {"t0": t0, "t1": t1, "received": verifiers[ch].received}


def _echo_waiter(receiver: Receiver, verifier: Verifier) -> Callable[[int, bytes], None]:
    """Return ``wait(seq, want)``: receive until the echo of frame ``seq`` (``want``) arrived.

    A transport that reads in place checks inside its ``take``. Otherwise its own recv call
    is used directly and the message compared whole with ``want`` (one memcmp); anything
    else -- a leftover warm-up frame (skipped) or damage (raised) -- goes through the full
    check. Every transport gets the same, so round trips measure transports, not framing.
    """
    check = verifier.check
    if type(receiver).take is not Receiver.take:
        take = receiver.take

        def wait_in_place(seq: int, want: bytes) -> None:
            while not take(check):
                pass

        return wait_in_place
    recv = receiver.recv_call()
    exact = verifier.count_exact

    def wait(seq: int, want: bytes) -> None:
        m = recv()
        if m == want:
            exact(seq)
            return
        while not check(m):
            m = recv()

    return wait


def _ping(
    sender: Sender, framer: Framer, receiver: Receiver, verifier: Verifier, count: int
) -> list[int]:
    clock = time.perf_counter_ns
    send = sender.send_call()
    # Built before the clock runs; the echo of frame seq is the same bytes (writer 0, seq).
    frames = [framer.frame_bytes(seq) for seq in range(count)]
    echo = _echo_waiter(receiver, verifier)
    samples = [0] * count
    for seq in range(count):
        f = frames[seq]
        t = clock()
        send(f)
        echo(seq, f)
        samples[seq] = clock() - t
    verifier.finish()
    return samples


def _echo(
    receiver: Receiver, verifier: Verifier, sender: Sender, framer: Framer, count: int
) -> None:
    send = sender.send_call()
    frames = [framer.frame_bytes(seq) for seq in range(count)]
    echo = _echo_waiter(receiver, verifier)
    for seq, f in enumerate(frames):
        echo(seq, f)
        send(f)
    verifier.finish()
