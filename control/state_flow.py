"""Live flow: a sampler thread reads the pipes' statistics and feeds the state machine.

``pipe.stats()`` only reads the counters in a pipe's shared header, so sampling never takes
a lock the data path uses, never wakes a waiter and never copies a message: the writers and
readers do not notice it.

Per connection the sampler derives messages/s and bytes/s (from counter deltas), fill %,
drops and writer waits, and drives the flow states:

- messages moved since the last round → ``flowing``;
- nothing moved for ``quiet_after`` seconds while messages wait (a backlog, or a writer
  that had to wait) → ``stalled``;
- nothing moved for ``quiet_after`` seconds with nothing waiting → ``open`` (idle).

Which counters belong to which connection: a ``one`` pipe carries one connection; in a
``multiplexer`` pipe each connection is one reader, found by its server's pid; in a
``combiner`` pipe each connection is one writer, found the same way. When the pid is not
known yet, the pipe-wide counters are used.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from control.state import Flow, SystemState
from pykernel import PykernelError

__all__ = ["FlowSampler", "PipeCounters", "counters_of"]


@dataclass(frozen=True)
class EndCounters:
    """Counters of one attached reader or writer.

    Attributes:
        pid: the attached process (0: a record nobody holds now).
        messages: messages it consumed (reader) or published (writer).
        bytes: payload bytes it consumed or published.
        drops: messages it missed (reader, lossy pipes).
        waits: times it had to wait for room or was refused for lack of it (writer).
        backlog: messages published but not yet consumed by it (reader).

    """

    pid: int
    messages: int = 0
    bytes: int = 0
    drops: int = 0
    waits: int = 0
    backlog: int = 0


@dataclass(frozen=True)
class PipeCounters:
    """The counters of one pipe the sampler needs, independent of the stats record's layout.

    Attributes:
        messages: messages published into the pipe so far.
        bytes: payload bytes published so far.
        fill: how many slots hold unread messages, as a fraction 0..1.
        readers: one entry per reader record in use.
        writers: one entry per writer record in use.

    """

    messages: int
    bytes: int
    fill: float
    readers: tuple[EndCounters, ...]
    writers: tuple[EndCounters, ...]

    @property
    def waits(self) -> int:
        """Writer waits summed over writers."""
        return sum(w.waits for w in self.writers)

    @property
    def drops(self) -> int:
        """Drops summed over readers."""
        return sum(r.drops for r in self.readers)


def _behind(head: int, position: int) -> int:
    """Messages between a reader's position and the head, across the 2^64 wrap.

    The snapshot is not atomic, so a reader may appear slightly ahead: that counts as 0.
    """
    gap = (head - position) % 2**64
    return gap if gap < 2**63 else 0


def counters_of(stats: Any) -> PipeCounters:
    """Translate a :class:`pykernel.PipeStats` into :class:`PipeCounters`.

    This is the one place that knows the stats record's field names.
    """
    head = int(stats.head)
    readers = tuple(
        EndCounters(pid=int(r.pid), messages=int(r.messages), bytes=int(r.bytes),
                    drops=int(r.drops), backlog=_behind(head, int(r.position)) if r.pid else 0)
        for r in stats.readers
    )
    writers = tuple(
        EndCounters(pid=int(w.pid), messages=int(w.messages), bytes=int(w.bytes),
                    waits=int(w.waits) + int(w.full))
        for w in stats.writers
    )
    slots = max(1, int(stats.slots))
    published = sum(w.messages for w in writers)
    return PipeCounters(
        messages=published or int(stats.written), bytes=sum(w.bytes for w in writers),
        fill=min(1.0, int(stats.fill) / slots), readers=readers, writers=writers,
    )


def _pipe_opener(name: str) -> Any:
    from pykernel import Pipe  # deferred: the state machine itself needs no C core

    return Pipe.open(name, prefault=False)  # inspection only: do not touch every page


@dataclass
class _Track:
    """What the sampler remembers per connection between rounds."""

    messages: int = -1
    bytes: int = 0
    time: float = 0.0
    last_progress: float = 0.0
    waits: int = 0


class FlowSampler:
    """A daemon thread that samples every pipe's statistics into the state machine.

    Args:
        state: the state machine to feed.
        interval: seconds between rounds.
        quiet_after: seconds without progress before a connection counts as idle or stalled.
        opener: opens a pipe by name, returning an object with ``stats()`` and ``close()``
            (default :meth:`pykernel.Pipe.open`). The kernel may pass its own handles.
        counters: translates a stats record (default :func:`counters_of`).

    """

    def __init__(self, state: SystemState, interval: float = 0.25, quiet_after: float = 1.0,
                 opener: Callable[[str], Any] = _pipe_opener,
                 counters: Callable[[Any], PipeCounters] = counters_of) -> None:
        self.state = state
        self.interval = interval
        self.quiet_after = quiet_after
        self._opener = opener
        self._counters = counters
        self._handles: dict[str, Any] = {}
        self._tracks: dict[str, _Track] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rounds = 0

    def start(self) -> FlowSampler:
        """Start the sampling thread (idempotent); returns self."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="pykernel-flow", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread and close the pipe handles it opened."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for handle in self._handles.values():
            with contextlib.suppress(Exception):
                handle.close()
        self._handles.clear()

    def __enter__(self) -> FlowSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        """Run one sampling round now (the thread calls this every ``interval``)."""
        view = self.state.pipes_with_connections()
        for gone in set(self._handles) - set(view):
            with contextlib.suppress(Exception):
                self._handles.pop(gone).close()
        pids = self.state.server_pids()
        live: set[str] = set()
        for name, (geometry, conns) in view.items():
            counters = self._read(name)
            live.update(c["id"] for c in conns)
            if counters is None:
                continue
            self.state.set_pipe_stats(name, _stats_json(counters))
            for conn in conns:
                self._update(conn, geometry, counters, pids)
        for gone in set(self._tracks) - live:
            del self._tracks[gone]
        self.rounds += 1
        self.state.tick()

    def _read(self, name: str) -> PipeCounters | None:
        try:
            handle = self._handles.get(name)
            if handle is None:
                handle = self._handles[name] = self._opener(name)
            return self._counters(handle.stats())
        except PykernelError:
            # Not created yet, or just removed: the next round tries again.
            handle = self._handles.pop(name, None)
            if handle is not None:
                with contextlib.suppress(Exception):
                    handle.close()
            return None

    def _update(self, conn: dict[str, Any], geometry: dict[str, Any], pc: PipeCounters,
                pids: dict[str, int]) -> None:
        picked = _connection_counters(conn, geometry, pc, pids)
        t = time.monotonic()
        track = self._tracks.setdefault(conn["id"], _Track())
        if picked is None:
            # Its end of a shared pipe has no process: nothing moves on this connection
            # (the pipe's other connections may well be flowing).
            flow = Flow(messages=max(track.messages, 0), bytes=track.bytes,
                        fill_pct=100.0 * pc.fill, writer_waits=track.waits, time=time.time())
            self.state.set_flow(conn["id"], flow, None, "")
            return
        messages, nbytes, fill, drops, waits, backlog = picked
        if track.messages < 0 or messages < track.messages:
            track.messages, track.bytes, track.time, track.last_progress = messages, nbytes, t, t
            track.waits = waits
        dt = max(t - track.time, 1e-9)
        moved = messages - track.messages
        rate, brate = moved / dt, (nbytes - track.bytes) / dt
        waited = waits > track.waits
        track.messages, track.bytes, track.time, track.waits = messages, nbytes, t, waits
        target: str | None = None
        cause = ""
        if moved > 0:
            track.last_progress = t
            target, cause = "flowing", "flow: messages moving"
        elif t - track.last_progress >= self.quiet_after:
            if backlog > 0 or waited:
                target, cause = "stalled", f"flow: {backlog} waiting, none moved"
            else:
                target, cause = "open", "flow: idle"
        flow = Flow(messages=messages, bytes=nbytes, msgs_per_s=rate, bytes_per_s=brate,
                    fill_pct=100.0 * fill, drops=drops, writer_waits=waits, time=time.time())
        self.state.set_flow(conn["id"], flow, target, cause)


def _connection_counters(conn: dict[str, Any], geometry: dict[str, Any], pc: PipeCounters,
                         pids: dict[str, int]) -> tuple[int, int, float, int, int, int] | None:
    """Pick one connection's share of its pipe's counters.

    Returns:
        (messages, bytes, fill fraction, drops, writer waits, backlog messages); None when
        the connection's own end of a shared (fan) pipe has no process (its server is down).
        A server that is up but attached from another pid gets the pipe's totals.

    """
    slots = max(1, int(geometry["slots"]))
    backlog_all = round(pc.fill * slots)
    if geometry["shape"] == "multiplexer":
        pid = pids.get(conn["target"].split(".", 1)[0])
        if pid is None:
            return None
        reader = next((r for r in pc.readers if r.pid == pid), None)
        if reader is not None:
            return (reader.messages, reader.bytes, min(1.0, reader.backlog / slots),
                    reader.drops, pc.waits, reader.backlog)
    elif geometry["shape"] == "combiner":
        pid = pids.get(conn["source"].split(".", 1)[0])
        if pid is None:
            return None
        writer = next((w for w in pc.writers if w.pid == pid), None)
        if writer is not None:
            return (writer.messages, writer.bytes, pc.fill, pc.drops, writer.waits,
                    backlog_all)
    return pc.messages, pc.bytes, pc.fill, pc.drops, pc.waits, backlog_all


def _stats_json(pc: PipeCounters) -> dict[str, Any]:
    return {
        "messages": pc.messages, "bytes": pc.bytes, "fill_pct": round(100.0 * pc.fill, 3),
        "drops": pc.drops, "writer_waits": pc.waits,
        "readers": [{"pid": r.pid, "messages": r.messages, "bytes": r.bytes, "drops": r.drops,
                     "backlog": r.backlog} for r in pc.readers if r.pid],
        "writers": [{"pid": w.pid, "messages": w.messages, "bytes": w.bytes, "waits": w.waits}
                    for w in pc.writers if w.pid],
    }
