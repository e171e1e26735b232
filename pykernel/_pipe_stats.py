"""Statistics of one pipe, and the host-wide list and cleanup of pipe segments.

Counters are read with relaxed loads from the shared header: each is written by one side
only, so a snapshot is cheap, never blocks and never disturbs the data path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pykernel._core import ffi, lib


@dataclass(frozen=True)
class ReaderStats:
    """One reader record of a pipe."""

    index: int
    """Record number."""
    pid: int
    """Attached process, 0 for a free record."""
    alive: bool
    """Whether ``pid`` is a live process (the one that attached: pid reuse is checked)."""
    position: int
    """Next sequence number this record reads."""
    messages: int
    """Messages consumed through this record."""
    bytes: int
    """Payload bytes consumed."""
    drops: int
    """Lossy mode: messages overwritten before this record read them."""
    waits: int
    """Times a read had to sleep."""


@dataclass(frozen=True)
class WriterStats:
    """One writer record of a pipe."""

    index: int
    """Record number."""
    pid: int
    """Attached process, 0 for a free record."""
    alive: bool
    """Whether ``pid`` is a live process."""
    messages: int
    """Messages published through this record."""
    bytes: int
    """Payload bytes published."""
    waits: int
    """Times a send had to sleep for room."""
    full: int
    """Sends refused or timed out for lack of room."""


@dataclass(frozen=True)
class PipeStats:
    """A snapshot of a pipe's counters (:meth:`Pipe.stats`)."""

    name: str
    """The pipe's name."""
    written: int
    """Positions claimed by writers since creation (messages, incl. aborted claims)."""
    written_bytes: int
    """Payload bytes published by all writers since creation."""
    fill: int
    """Messages waiting for the slowest attached (multiplexer) or the one reader."""
    slots: int
    """Ring length, for fill ratios."""
    head: int
    """Next 64-bit sequence number to be claimed."""
    readers: tuple[ReaderStats, ...]
    """Reader records that are attached or were used (position or counters non-zero)."""
    writers: tuple[WriterStats, ...]
    """Writer records that are attached or were used."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict of the snapshot."""
        return {
            "name": self.name,
            "written": self.written,
            "written_bytes": self.written_bytes,
            "fill": self.fill,
            "slots": self.slots,
            "head": self.head,
            "readers": [vars(r) for r in self.readers],
            "writers": [vars(w) for w in self.writers],
        }


def read_stats(name: str, handle: Any, slots: int, max_readers: int, max_writers: int) -> PipeStats:
    """Snapshot the counters of a mapped pipe (``handle`` is a ``pk_pipe *``)."""
    st = ffi.new("pk_stats *")
    rs = ffi.new("pk_reader_stats[]", max_readers)
    ws = ffi.new("pk_writer_stats[]", max_writers)
    lib.pk_pipe_stats(handle, st, rs, max_readers, ws, max_writers)
    readers = tuple(
        ReaderStats(i, r.pid, bool(r.alive), r.position, r.messages, r.bytes, r.drops, r.waits)
        for i, r in enumerate(rs)
        if r.pid or r.messages or i == 0
    )
    writers = tuple(
        WriterStats(i, w.pid, bool(w.alive), w.messages, w.bytes, w.waits, w.full)
        for i, w in enumerate(ws)
        if w.pid or w.messages or i == 0
    )
    return PipeStats(
        name=name,
        written=(st.head - st.start_pos) % (1 << 64),
        written_bytes=sum(ws[i].bytes for i in range(max_writers)),
        fill=st.fill,
        slots=slots,
        head=st.head,
        readers=readers,
        writers=writers,
    )
