"""Is a process alive? One answer for every layer.

``kill(pid, 0)`` alone counts zombies as alive; :func:`process_start` reads the start time
from ``/proc`` so a caller that stored it can also tell a recycled pid from the original.
"""

from __future__ import annotations


def process_start(pid: int) -> int | None:
    """Return the start time of process ``pid`` in clock ticks since boot, or None if gone.

    A zombie (exited, waiting to be reaped) counts as gone.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = data[data.rindex(b")") + 2 :].split()
    if fields[0] == b"Z":
        return None
    return int(fields[19])  # field 22 overall: starttime


def pid_alive(pid: object) -> bool:
    """Return whether ``pid`` (any value; non-positive or non-int is False) names a live process."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    return process_start(pid) is not None
