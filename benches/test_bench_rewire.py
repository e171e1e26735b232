"""Run-time rewiring on the real kernel: how long a connect and a disconnect take.

Run: ``pytest benches/test_bench_rewire.py``. The system is the one of
``tests/test_rewire.py`` (a ticker sending ~500 tagged messages/s into a multiplexer, a
plain-output generator, listeners that check every message), booted once with forked
Python servers. Each round connects (or disconnects) one edge and returns once the servers
it restarted are running again; the setup (not timed) puts the edge back as it was.

- ``mux-connect``: a new reader on the ticker's multiplexer (the pipe is reused; only the
  reader restarts);
- ``one-connect``: a new 1:1 connection (a new pipe; both ends restart);
- ``one-disconnect``: removing it (both ends restart; the pipe is removed);
- ``mux-disconnect``: removing the multiplexer's new reader while the ticker keeps sending:
  the reader stops once it has drained its pipe (``ctx.messages``' drain, up to 2 s while
  messages keep coming), so this one measures the server's shutdown more than the kernel.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from control.kernel import Kernel
from control.plan import build_plan, connection_id

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_rewire import write_system  # the test system, not a copy

EDGES = {"mux-connect": ("ticker.out", "l2.inp"), "mux-disconnect": ("ticker.out", "l2.inp"),
         "one-connect": ("gen.out", "l3.inp"), "one-disconnect": ("gen.out", "l3.inp")}


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    """The rewiring test system under one kernel for the whole module."""
    tmp = tmp_path_factory.mktemp("rewire")
    sys.path.insert(0, str(tmp))
    system = f"rb{uuid.uuid4().hex[:8]}"
    k = Kernel(build_plan(write_system(tmp, system)), run_dir=tmp / "run", builtins=(),
               fork_python=True, stop_grace=3)
    k.start()
    try:
        yield k
    finally:
        k.stop()
        for name in os.listdir("/dev/shm"):
            if name.startswith(f"pykernel.{system}."):
                os.unlink(f"/dev/shm/{name}")


def _connected(kernel: Kernel, source: str, target: str) -> bool:
    return connection_id(source, target) in {c.id for c in kernel.plan.connections}


@pytest.mark.parametrize("case", sorted(EDGES))
def test_rewire(benchmark, machine, kernel: Kernel, case: str) -> None:  # type: ignore[no-untyped-def]
    """One connect or disconnect, timed from the call until the restarted servers run."""
    source, target = EDGES[case]
    connect = case.endswith("-connect")

    def setup() -> tuple[tuple[object, ...], dict[str, object]]:
        if _connected(kernel, source, target) == connect:  # put the edge back first
            if connect:
                kernel.disconnect(connection_id(source, target))
            else:
                kernel.connect(source, target)
        return (), {}

    def act() -> None:
        if connect:
            kernel.connect(source, target)
        else:
            kernel.disconnect(connection_id(source, target))

    benchmark.extra_info["machine"] = machine
    benchmark.extra_info["load_average"] = os.getloadavg()
    benchmark.pedantic(act, setup=setup, rounds=5, iterations=1)
