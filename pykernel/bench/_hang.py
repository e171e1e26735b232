"""Where a hung child is stuck: its Python stack, dumped on request before it is killed.

Each child registers :mod:`faulthandler` on SIGUSR1, writing into an unnamed temporary
file it inherited from the parent. At a case timeout the parent signals its own pending
children, reads the files and names the innermost frames in the report, so "timeout"
says *where* (e.g. inside a blocking ``recv``), not only *that*.
"""

from __future__ import annotations

import faulthandler
import os
import re
import signal
import time
from typing import IO, Any

_FRAME = re.compile(r'File "([^"]+)", line (\d+) in (\S+)')
_DEPTH = 3
_SETTLE_S = 0.2


def arm(dump: IO[bytes]) -> None:
    """In a child: dump every thread's stack to ``dump`` when SIGUSR1 arrives."""
    faulthandler.register(signal.SIGUSR1, file=dump, all_threads=True, chain=False)


def request(procs: list[Any]) -> None:
    """In the parent: ask each still-running child (by its own handle) for its stack."""
    for proc in procs:
        if proc.is_alive() and proc.pid:
            os.kill(proc.pid, signal.SIGUSR1)
    if procs:
        time.sleep(_SETTLE_S)


def summary(dump: IO[bytes]) -> str:
    """Return ``func file:line < caller file:line ...`` of the innermost frames, or ``""``."""
    dump.seek(0)
    text = dump.read().decode("utf-8", "replace")
    frames = [
        f"{func} {os.path.basename(path)}:{line}" for path, line, func in _FRAME.findall(text)
    ]
    return " < ".join(frames[:_DEPTH])
