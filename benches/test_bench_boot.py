"""Boot of 100 servers to running through the kernel (target: < 3 s).

Run: ``pytest benches/test_bench_boot.py``. Each round plans nothing new: it creates the
plan's pipes, boots the housekeeping built-in and 100 servers, and returns once every one
has attached its terminals and said READY=1; the teardown (not timed) stops them and
removes the pipes. Two systems, each a ring of 100 relays (``s_i.out -> s_(i+1).in``, 100
pipes): C servers (``examples/c_server/pk_upper.c``), and Python servers started by forking
the kernel (``pykernel up``'s default) or by exec'ing a fresh interpreter each
(``--no-fork``).
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from control.kernel import Kernel
from control.plan import Plan, build_plan

REPO = Path(__file__).resolve().parents[1]
SERVERS = 100

RELAY = '''
from control.manifest import manifest, terminal

@manifest(servername="relay", class_hex="0x7", owner="bench",
          terminals=[terminal("in", "input", message_size=256),
                     terminal("out", "output", message_size=256)])
def relay(ctx):
    out = ctx.terminal("out")
    for msg in ctx.messages("in"):
        out.send(msg)
'''


def write_ring(directory: Path, kind: str, servers: int = SERVERS) -> Path:
    """Write a wiring file: a ring of ``servers`` relays of ``kind`` (c or python)."""
    system = f"boot{kind}{uuid.uuid4().hex[:6]}"
    lines = [f"system: {system}", f"python_path: [{json.dumps(str(directory))}]",
             "defaults: {slots: 8, restart: never}", "servers:"]
    if kind == "c":
        subprocess.run(["make", "-s", "-C", str(REPO / "examples" / "c_server"),
                        f"OUT={directory}"], check=True)
        (directory / "upper.manifest.yaml").write_text(
            "servername: upper\nclass_hex: '0x40'\nowner: bench\nterminals:\n"
            "  - {name: in, direction: input, message_size: 256}\n"
            "  - {name: out, direction: output, message_size: 256}\n")
        server = (f"{{command: [{json.dumps(str(directory / 'pk-upper'))}], "
                  f"manifest: {json.dumps(str(directory / 'upper.manifest.yaml'))}}}")
    else:
        (directory / "bench_relay.py").write_text(RELAY)
        server = '{python: "bench_relay:relay"}'
    lines += [f"  s{i}: {server}" for i in range(servers)]
    lines.append("connections:")
    lines += [f"  - s{i}.out -> s{(i + 1) % servers}.in" for i in range(servers)]
    path = directory / "ring.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def bench_boot(benchmark, plan: Plan, run_dir: Path, rounds: int,  # type: ignore[no-untyped-def]
               fork: bool) -> None:
    kernels: list[Kernel] = []

    def setup() -> tuple[tuple[Kernel], dict[str, object]]:
        kernel = Kernel(plan, run_dir=run_dir, ready_timeout=120, fork_python=fork)
        kernels.append(kernel)
        return (kernel,), {}

    try:
        status = benchmark.pedantic(lambda k: k.start(), setup=setup,
                                    teardown=lambda k: k.stop(), rounds=rounds)
    finally:
        for kernel in kernels:
            kernel.stop()
    assert sum(not s.builtin for s in status.services) == SERVERS
    assert {s.state.value for s in status.services} == {"running"}
    leftover = [n for n in os.listdir("/dev/shm") if n.startswith(f"pykernel.{plan.system}.")]
    assert leftover == []


@pytest.mark.parametrize(("kind", "fork", "rounds"),
                         [("c", False, 5), ("python", True, 5), ("python", False, 1)],
                         ids=["c", "python-fork", "python-exec"])
def test_boot_100_servers(benchmark, machine, kind: str, fork: bool,  # type: ignore[no-untyped-def]
                          rounds: int, tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Boot 100 servers (each attaching 2 terminals) plus the built-ins to running."""
    monkeypatch.syspath_prepend(str(tmp_path))
    plan = build_plan(write_ring(tmp_path, kind))
    benchmark.extra_info.update(machine)
    benchmark.extra_info.update({"servers": SERVERS, "pipes": len(plan.pipes), "kind": kind,
                                 "fork": fork})
    bench_boot(benchmark, plan, tmp_path / "run", rounds, fork)
