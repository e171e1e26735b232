"""What a transport must provide to be compared: channels, senders, receivers.

A :class:`Transport` opens a :class:`Link` for one one-way :class:`Channel` in the parent
process (before the children fork, so queues, pipes and temporary directories are
inherited); each child then turns the link into its :class:`Sender` or :class:`Receiver`.
The default stream loops call ``send``/``take`` once per message; a variant that batches
or reads in place overrides them.
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from pykernel.bench._frames import Buffer, Framer, Verifier

SHAPES = ("one", "fanout", "fanin")
ALL_CASES = frozenset({"rtt64", "oneway64", "oneway4k", "oneway1m", "fanout64", "fanin64"})


@dataclass(frozen=True)
class Channel:
    """One one-way path between processes.

    Attributes:
        shape: ``one`` (1→1), ``fanout`` (1 writer, every reader gets every message) or
            ``fanin`` (many writers, one reader).
        writers: number of writer processes.
        readers: number of reader processes.
        size: bytes per message (every message of a run has this size).
        depth: queue depth in messages, where the transport lets us choose it.
        name: unique, filesystem-safe name for this channel in this run.

    """

    shape: str
    writers: int
    readers: int
    size: int
    depth: int
    name: str


class Sender(ABC):
    """The writing end of a channel, in a child process.

    Attributes:
        wants_bytes: the timed loop hands :meth:`send_call` each frame as a new ``bytes``
            (built in one pack) instead of the reused ``bytearray``: for transports that
            would copy it into bytes anyway.

    """

    wants_bytes: bool = False

    @abstractmethod
    def send(self, frame: bytearray) -> None:
        """Send one frame; ``frame`` is reused by the caller right after this returns."""

    def send_call(self) -> Callable[[Buffer], Any]:
        """Return the callable the timed loop sends each frame with (default: ``send``).

        An adapter whose ``send`` only forwards (given ``bytes`` when :attr:`wants_bytes`)
        returns its library's call, so no transport pays an adapter frame per message.
        """
        return self.send

    def send_stream(self, framer: Framer, count: int) -> None:
        """Send messages ``0 .. count-1`` built by ``framer`` (the timed loop)."""
        send = self.send_call()
        frame = framer.frame_bytes if self.wants_bytes else framer.frame
        for seq in range(count):
            send(frame(seq))

    def close(self) -> None:  # noqa: B027 - optional hook, most ends have nothing to free
        """Release this end (default: nothing to release)."""


class Receiver(ABC):
    """The reading end of a channel, in a child process."""

    @abstractmethod
    def recv(self) -> Buffer:
        """Wait for and return the next message (valid until the next call)."""

    def take(self, check: Callable[[Buffer], bool]) -> bool:
        """Receive one message and return ``check(message)`` while it is still valid."""
        return check(self.recv())

    def recv_call(self) -> Callable[[], Buffer]:
        """Return the callable behind :meth:`recv` (default: ``recv`` itself).

        An adapter whose ``recv`` only forwards to its library's call returns that call, so
        the timed loop pays no adapter frame per message; every transport gets the same.
        """
        return self.recv

    def recv_stream(self, verifier: Verifier) -> None:
        """Receive and verify until ``verifier`` has every timed message (the timed loop)."""
        check = verifier.check
        remaining = verifier.total - verifier.received
        if type(self).take is not Receiver.take:  # reads in place: check inside take
            take = self.take
            while remaining:
                if take(check):
                    remaining -= 1
            return
        recv = self.recv_call()
        while remaining:
            if check(recv()):
                remaining -= 1

    def close(self) -> None:  # noqa: B027 - optional hook, most ends have nothing to free
        """Release this end (default: nothing to release)."""


class Link(ABC):
    """A channel opened in the parent; children derive their ends from it after fork."""

    @abstractmethod
    def sender(self, index: int) -> Sender:
        """Return writer ``index``'s end (called in that writer's process)."""

    @abstractmethod
    def receiver(self, index: int) -> Receiver:
        """Return reader ``index``'s end (called in that reader's process)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free what the parent created (called once, after every child ended)."""


class FanoutSender(Sender):
    """Fan-out for point-to-point transports: the writer sends each frame on every link."""

    def __init__(self, senders: Sequence[Sender]) -> None:
        self._senders = list(senders)

    def send(self, frame: bytearray) -> None:
        """Send ``frame`` to every reader in turn."""
        for s in self._senders:
            s.send(frame)

    def close(self) -> None:
        """Close every per-reader end."""
        for s in self._senders:
            s.close()


class QueueLink(Link):
    """A link made of queue-like objects: one shared (1:1, fan-in) or one per reader.

    Fan-out over a point-to-point queue means the writer sends every frame to each
    reader's own queue. Subclasses say how to make one queue and wrap its two ends.
    """

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.fanout = channel.shape == "fanout"
        self.queues = [self.make() for _ in range(channel.readers if self.fanout else 1)]

    @abstractmethod
    def make(self) -> Any:
        """Create one queue for this channel (in the parent)."""

    @abstractmethod
    def wrap_sender(self, queue: Any) -> Sender:
        """Return the writing end of ``queue``."""

    @abstractmethod
    def wrap_receiver(self, queue: Any) -> Receiver:
        """Return the reading end of ``queue``."""

    def sender(self, index: int) -> Sender:
        """Return the writer's end: every reader's queue for fan-out, else the one queue."""
        if self.fanout:
            return FanoutSender([self.wrap_sender(q) for q in self.queues])
        return self.wrap_sender(self.queues[0])

    def receiver(self, index: int) -> Receiver:
        """Return reader ``index``'s end."""
        return self.wrap_receiver(self.queues[index if self.fanout else 0])


class Transport:
    """One row of the comparison.

    Attributes:
        key: short id used on the command line (``--peers``).
        label: the row name in the table.
        wait: how its receive waits: ``blocking`` or ``busy-poll``.
        package: the distribution whose presence (and version) decides availability,
            or ``None`` for the standard library.
        module: the import name to look for.
        cases: the case keys (see ``_cases``) this transport takes part in.
        link: the :class:`Link` class :meth:`open` instantiates for each channel.
        is_pykernel: True for the pykernel rows (the ones compared to the peers).
        drops_until_joined: True when messages sent before a reader has fully joined may
            be dropped (PUB/SUB's "slow joiner"): writers then repeat the warm-up frame
            until acknowledged. Otherwise exactly one is sent, since a second one may not
            fit the transport's buffer (a 1 MiB frame in a 64 KiB pipe) and would block.

    """

    key: str = ""
    label: str = ""
    wait: str = "blocking"
    package: str | None = None
    module: str | None = None
    cases: frozenset[str] = frozenset()
    is_pykernel: bool = False
    drops_until_joined: bool = False

    def unavailable(self) -> str | None:
        """Return why this transport cannot run here (e.g. ``not installed``), or None."""
        if self.module is not None and importlib.util.find_spec(self.module) is None:
            return "not installed"
        return None

    def version(self) -> str:
        """Return the installed version of the package, or ``stdlib``."""
        if self.package is None:
            return "stdlib"
        try:
            return metadata.version(self.package)
        except metadata.PackageNotFoundError:
            return "unknown"

    link: Callable[[Channel], Link] | None = None

    def open(self, channel: Channel) -> Link:
        """Create the channel in the parent process; must be inheritable by fork.

        The default builds ``self.link(channel)``; a transport may override it instead.
        """
        if self.link is None:
            raise NotImplementedError(f"{type(self).__name__} sets neither link nor open()")
        return self.link(channel)
