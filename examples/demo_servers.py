"""The demo system's servers: source → (multiplexer) → two workers → (combiner) → sink.

- ``source`` writes numpy frames (float64[512]; element 0 is the sequence number, the rest
  ``(seq + i) % 997``) into its multiplexer, zero-copy through ``Writer.reserve``.
- ``worker`` (run twice, as ``worker_a`` and ``worker_b``) reads every frame, computes
  ``2x + 1`` on the data and sends a result: a 32-byte header (sequence number, its own
  name) and the 511 transformed values, into the sink's combiner.
- ``sink`` checks every result: the content must equal what the source sent, transformed,
  and each worker's sequence numbers must arrive in order with no gap or repeat. It writes
  ``sink-report.json`` in the run directory every half second and once more at the end.

Knobs (environment): ``DEMO_FRAMES`` stops the source after that many frames (default
0: never), ``DEMO_RATE`` caps frames per second (default 500; 0: as fast as the pipes go).
"""

from __future__ import annotations

import json
import os
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np

from control.manifest import manifest, terminal
from pykernel.server import ServerContext

FRAME_LEN = 512
DATA_LEN = FRAME_LEN - 1
MODULUS = 997
RESULT_HEADER = struct.Struct("<Q16s8x")  # seq, worker name, padding to 32 bytes
RESULT_SIZE = RESULT_HEADER.size + DATA_LEN * 8
_BASE = np.arange(DATA_LEN, dtype=np.float64)


def frame_data(seq: int) -> np.ndarray:
    """Return the data part of frame ``seq`` as the source writes it."""
    return (_BASE + float(seq)) % MODULUS


def transform(data: np.ndarray) -> np.ndarray:
    """Return what a worker computes from a frame's data."""
    return data * 2.0 + 1.0


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, sort_keys=True, indent=1))
    tmp.replace(path)  # atomic: readers never see half a report


def _report_path(ctx: ServerContext, name: str) -> Path:
    return Path(ctx.run_dir or ".") / name


@manifest(servername="source", class_hex="0x10", owner="demo",
          terminals=[terminal("frames", "multiplexer", message_size=FRAME_LEN * 8,
                              dtype="float64", shape=(FRAME_LEN,))])
def source(ctx: ServerContext) -> int:
    """Write numbered frames until stopped (or ``DEMO_FRAMES`` of them)."""
    from pykernel import PipeTimeout

    limit = int(os.environ.get("DEMO_FRAMES", "0"))
    rate = float(os.environ.get("DEMO_RATE", "500"))
    out = ctx.terminal("frames")
    report = _report_path(ctx, "source-report.json")
    sent = 0
    began = time.monotonic()
    next_report = began
    while not ctx.stopping.is_set() and (limit == 0 or sent < limit):
        if rate > 0:
            ahead = sent / rate - (time.monotonic() - began)
            if ahead > 0:
                ctx.stopping.wait(ahead)
                continue
        try:
            with out.reserve(FRAME_LEN * 8, timeout=0.2) as slot:
                frame = slot.array(np.float64, (FRAME_LEN,))
                frame[0] = sent
                frame[1:] = frame_data(sent)
        except PipeTimeout:
            continue  # readers are behind: look at the stop flag, then try again
        sent += 1
        if time.monotonic() >= next_report:
            _write_json(report, {"sent": sent, "final": False})
            ctx.status(f"sent {sent}")
            next_report = time.monotonic() + 0.5
    _write_json(report, {"sent": sent, "final": limit > 0 and sent >= limit})
    ctx.status(f"sent {sent}")
    ctx.stopping.wait()
    _write_json(report, {"sent": sent, "final": True})
    print(f"source: sent {sent} frames", flush=True)
    return 0


@manifest(servername="worker", class_hex="0x20", owner="demo",
          terminals=[terminal("frames", "input", message_size=FRAME_LEN * 8,
                              dtype="float64", shape=(FRAME_LEN,)),
                     terminal("results", "output", message_size=RESULT_SIZE)])
def worker(ctx: ServerContext) -> int:
    """Transform every frame and pass it on, tagged with this worker's name."""
    from pykernel import PipeTimeout

    out = ctx.terminal("results")
    name = ctx.server.encode()[:16]
    buf = bytearray(RESULT_SIZE)
    data = np.frombuffer(buf, dtype=np.float64, offset=RESULT_HEADER.size)
    done = 0
    for msg in ctx.messages("frames"):
        frame = np.frombuffer(msg, dtype=np.float64)
        RESULT_HEADER.pack_into(buf, 0, int(frame[0]), name)
        np.multiply(frame[1:], 2.0, out=data)
        data += 1.0
        while True:
            try:
                out.send(buf, timeout=0.5)
                break
            except PipeTimeout:
                if ctx.stopping.is_set():
                    print(f"{ctx.server}: sink not reading; dropped seq {int(frame[0])}")
                    break
        done += 1
        if done % 1000 == 0:
            ctx.status(f"passed {done}")
    print(f"{ctx.server}: passed {done} frames", flush=True)
    return 0


class Verifier:
    """Checks results: content, and per-worker order without gaps or repeats."""

    def __init__(self) -> None:
        self.workers: dict[str, dict[str, int]] = {}
        self.received = 0
        self.verified = 0
        self.errors = 0
        self.first_error = ""

    def check(self, msg: bytes) -> None:
        """Verify one result message (never raises: problems are counted)."""
        self.received += 1
        if len(msg) != RESULT_SIZE:
            self._error(f"result of {len(msg)} bytes, expected {RESULT_SIZE}")
            return
        seq, raw_name = RESULT_HEADER.unpack_from(msg)
        name = raw_name.rstrip(b"\0").decode(errors="replace")
        stats = self.workers.setdefault(name, {"received": 0, "next_seq": 0, "gaps": 0,
                                               "repeats": 0, "bad": 0})
        stats["received"] += 1
        ok = True
        if seq > stats["next_seq"]:
            stats["gaps"] += seq - stats["next_seq"]
            self._error(f"{name}: expected seq {stats['next_seq']}, got {seq}")
            ok = False
        elif seq < stats["next_seq"]:
            stats["repeats"] += 1
            self._error(f"{name}: seq {seq} again (expected {stats['next_seq']})")
            ok = False
        stats["next_seq"] = max(stats["next_seq"], seq + 1)
        data = np.frombuffer(msg, dtype=np.float64, offset=RESULT_HEADER.size)
        if not np.array_equal(data, transform(frame_data(seq))):
            stats["bad"] += 1
            self._error(f"{name}: seq {seq} has wrong content")
            ok = False
        self.verified += ok

    def _error(self, text: str) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = text

    def report(self, final: bool) -> dict[str, Any]:
        """Return the report written to ``sink-report.json``."""
        return {"received": self.received, "verified": self.verified, "errors": self.errors,
                "first_error": self.first_error, "workers": self.workers, "final": final}


@manifest(servername="sink", class_hex="0x30", owner="demo",
          terminals=[terminal("results", "combiner", message_size=RESULT_SIZE)])
def sink(ctx: ServerContext) -> int:
    """Verify every result; report counts per worker."""
    verifier = Verifier()
    report = _report_path(ctx, "sink-report.json")
    next_report = 0.0

    def publish() -> None:
        nonlocal next_report
        _write_json(report, verifier.report(final=False))
        ctx.status(f"verified {verifier.verified}, errors {verifier.errors}")
        next_report = time.monotonic() + 0.5

    publish()
    for msg in ctx.messages("results", on_idle=publish):
        verifier.check(msg)
        if time.monotonic() >= next_report:
            publish()
    _write_json(report, verifier.report(final=True))
    print(f"sink: received {verifier.received}, verified {verifier.verified}, "
          f"errors {verifier.errors} {verifier.first_error}".rstrip(), flush=True)
    return 0 if verifier.errors == 0 else 1
