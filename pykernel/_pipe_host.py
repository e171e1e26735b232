"""Every pykernel pipe on this host: list them, and remove the ones nobody uses any more.

Segments are found as ``/dev/shm/pykernel.*``. A pipe is *in use* while its creator or any
attached reader or writer is a live process (pid and start time both match, so a reused
pid does not count); :func:`clean_pipes` removes the others.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Any

from pykernel._core import ffi, lib
from pykernel._errors import PipeError, PipeNotFoundError
from pykernel._pipe import SHM_DIR, SHM_PREFIX, Pipe


@dataclass(frozen=True)
class PipeInfo:
    """One pipe segment on the host, as :func:`list_pipes` found it."""

    name: str
    """Pipe name (the segment is ``/dev/shm/pykernel.<name>``)."""
    shape: str
    """``one``, ``multiplexer`` or ``combiner`` ('' when unreadable)."""
    lossy: bool
    """Whether writers overwrite unread messages."""
    slot_size: int
    """Largest message in bytes."""
    slots: int
    """Ring length."""
    size_bytes: int
    """Size of the segment file."""
    mode: int
    """Permission bits of the segment."""
    uid: int
    """Owner of the segment."""
    creator_pid: int
    """Process that created it."""
    creator_alive: bool
    """Whether the creator still runs."""
    reader_pids: tuple[int, ...]
    """Attached readers."""
    writer_pids: tuple[int, ...]
    """Attached writers."""
    live_pids: tuple[int, ...]
    """Creator, readers and writers that are live processes."""
    written: int
    """Messages written since creation."""
    fill: int
    """Messages waiting for the slowest reader."""
    error: str | None
    """Why the segment could not be read as a pipe (then most fields are empty)."""

    @property
    def in_use(self) -> bool:
        """Whether any of its processes still runs (unreadable segments count as in use)."""
        return bool(self.live_pids) or self.error is not None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (``in_use`` included)."""
        d = dict(vars(self))
        d["in_use"] = self.in_use
        d["reader_pids"] = list(self.reader_pids)
        d["writer_pids"] = list(self.writer_pids)
        d["live_pids"] = list(self.live_pids)
        return d


def _names() -> list[str]:
    try:
        entries = os.listdir(SHM_DIR)
    except OSError:
        return []
    return sorted(e[len(SHM_PREFIX) :] for e in entries if e.startswith(SHM_PREFIX))


def pipe_info(name: str) -> PipeInfo:
    """Describe pipe ``name`` (never raises for a broken segment: see ``error``).

    Raises:
        PipeNotFoundError: no such segment.

    """
    path = os.path.join(SHM_DIR, SHM_PREFIX + name)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise PipeNotFoundError(f"pipe {name!r} does not exist") from None
    base: dict[str, Any] = dict(
        name=name,
        shape="",
        lossy=False,
        slot_size=0,
        slots=0,
        size_bytes=st.st_size,
        mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid,
        creator_pid=0,
        creator_alive=False,
        reader_pids=(),
        writer_pids=(),
        live_pids=(),
        written=0,
        fill=0,
        error=None,
    )
    try:
        pipe = Pipe.open(name, prefault=False)
    except PipeNotFoundError:
        raise
    except PipeError as exc:
        return PipeInfo(**{**base, "error": str(exc)})
    try:
        info = ffi.new("pk_pipe_info *")
        lib.pk_pipe_info_get(pipe._handle(), info)
        stats = pipe.stats()
        creator_alive = bool(lib.pk_pipe_creator_alive(pipe._handle()))
        readers = tuple(r.pid for r in stats.readers if r.pid > 0)
        writers = tuple(w.pid for w in stats.writers if w.pid > 0)
        live = [r.pid for r in stats.readers if r.alive] + [w.pid for w in stats.writers if w.alive]
        if creator_alive:
            live.insert(0, info.creator_pid)
        return PipeInfo(
            **{
                **base,
                "shape": pipe.shape,
                "lossy": pipe.lossy,
                "slot_size": pipe.slot_size,
                "slots": pipe.slots,
                "creator_pid": info.creator_pid,
                "creator_alive": creator_alive,
                "reader_pids": readers,
                "writer_pids": writers,
                "live_pids": tuple(dict.fromkeys(live)),
                "written": stats.written,
                "fill": stats.fill,
            }
        )
    finally:
        pipe.close()


def list_pipes() -> list[PipeInfo]:
    """Every pykernel pipe segment on the host, sorted by name, with geometry and pids."""
    out = []
    for name in _names():
        try:
            out.append(pipe_info(name))
        except PipeNotFoundError:
            continue  # removed while we looked
    return out


def clean_pipes() -> list[str]:
    """Remove every pipe whose processes (creator, readers, writers) are all gone.

    Unreadable segments (bad magic, other ABI, no permission) are left alone; they show up
    in :func:`list_pipes` with their ``error``.

    Returns:
        The names removed.

    """
    removed = []
    for info in list_pipes():
        if info.in_use:
            continue
        try:
            Pipe.unlink(info.name)
        except PipeError:  # gone meanwhile, or another user's (sticky /dev/shm): not ours
            continue
        removed.append(info.name)
    return removed
