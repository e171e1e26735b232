"""The executor's built-in services, run as ``python -m pykernel._supervise_builtins NAME``.

``housekeeping``: removes stale pipes (segments whose processes are all gone, see
:func:`pykernel.clean_pipes`; only those named ``--prefix...`` when given: a kernel passes
``<system>.`` so it never touches other systems' pipes) once at start and then every
``--clean-every`` seconds, and
writes a heartbeat file ``heartbeat.json`` (``{"pid", "beats", "time", "cleaned"}``) in the
run directory every ``--interval`` seconds. It reports ready after the first pass.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from pykernel._supervise import NOTIFY_ENV, RUN_DIR_ENV, die_with_kernel


def _notify(line: bytes) -> None:
    fd = os.environ.get(NOTIFY_ENV)
    if fd:
        with contextlib.suppress(OSError, ValueError):
            os.write(int(fd), line)


def _write_heartbeat(path: Path, beats: int, cleaned: int) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(
        {"pid": os.getpid(), "beats": beats, "time": time.time(), "cleaned": cleaned}
    ))
    tmp.replace(path)  # atomic: a reader never sees half a file


def _clean(prefix: str) -> list[str]:
    """Remove stale pipes (all their processes gone) whose names start with ``prefix``."""
    from pykernel import Pipe, PipeNotFoundError, clean_pipes, list_pipes

    if not prefix:
        return clean_pipes()
    removed = []
    for info in list_pipes():
        if info.name.startswith(prefix) and not info.in_use:
            with contextlib.suppress(PipeNotFoundError):
                Pipe.unlink(info.name)
                removed.append(info.name)
    return removed


def housekeeping(interval: float, clean_every: float, prefix: str = "") -> int:
    """Run the housekeeping loop until SIGTERM/SIGINT; return the exit status."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    die_with_kernel()
    run_dir = Path(os.environ.get(RUN_DIR_ENV) or ".")
    heartbeat = run_dir / "heartbeat.json"
    removed = _clean(prefix)
    cleaned = len(removed)
    if removed:
        print(f"housekeeping: removed stale pipes {', '.join(removed)}", flush=True)
    beats = 0
    _write_heartbeat(heartbeat, beats, cleaned)
    _notify(b"READY=1\n")
    next_clean = time.monotonic() + clean_every
    while not stop.wait(interval):
        beats += 1
        if time.monotonic() >= next_clean:
            removed = _clean(prefix)
            cleaned += len(removed)
            if removed:
                print(f"housekeeping: removed stale pipes {', '.join(removed)}", flush=True)
            next_clean = time.monotonic() + clean_every
        _write_heartbeat(heartbeat, beats, cleaned)
        _notify(f"STATUS=beat {beats}, {cleaned} stale pipes removed\n".encode())
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m pykernel._supervise_builtins housekeeping [--interval S]``."""
    parser = argparse.ArgumentParser(prog="pykernel._supervise_builtins")
    parser.add_argument("name", choices=["housekeeping"])
    parser.add_argument("--interval", type=float, default=1.0, help="seconds per heartbeat")
    parser.add_argument("--clean-every", type=float, default=30.0,
                        help="seconds between stale-pipe sweeps")
    parser.add_argument("--prefix", default="",
                        help="clean only pipes whose names start with this (default: all)")
    args = parser.parse_args(argv)
    return housekeeping(args.interval, args.clean_every, args.prefix)


if __name__ == "__main__":
    sys.exit(main())
