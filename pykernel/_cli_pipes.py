"""``pykernel pipes list|show|clean``: the pipe segments on this host."""

from __future__ import annotations

import argparse
from typing import Any

from pykernel._pipe import Pipe
from pykernel._pipe_host import clean_pipes, list_pipes, pipe_info
from pykernel.cli import add_json_flag, emit


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``pipes`` verb group to the ``pykernel`` command."""
    parser = subparsers.add_parser("pipes", help="list, inspect and clean pipe segments")
    sub = parser.add_subparsers(dest="pipes_verb", metavar="ACTION", parser_class=type(parser))
    sub.required = True
    p_list = sub.add_parser("list", help="every pykernel pipe on this host")
    add_json_flag(p_list)
    p_list.set_defaults(func=_list)
    p_show = sub.add_parser("show", help="geometry and per-reader/writer counters of a pipe")
    p_show.add_argument("name", help="pipe name (without the pykernel. prefix)")
    add_json_flag(p_show)
    p_show.set_defaults(func=_show)
    p_clean = sub.add_parser("clean", help="remove pipes whose processes are all gone")
    add_json_flag(p_clean)
    p_clean.set_defaults(func=_clean)


def _render_list(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no pykernel pipes"
    head = (
        f"{'NAME':<28} {'SHAPE':<11} {'SLOTS':>7} {'SLOT B':>8} {'FILL':>7} {'WRITTEN':>10}  PIDS"
    )
    lines = [head]
    for r in rows:
        if r["error"]:
            lines.append(f"{r['name']:<28} unreadable: {r['error']}")
            continue
        shape = r["shape"] + ("~" if r["lossy"] else "")
        pids = ",".join(map(str, r["live_pids"])) or "none alive (stale)"
        lines.append(
            f"{r['name']:<28} {shape:<11} {r['slots']:>7} {r['slot_size']:>8} "
            f"{r['fill']:>7} {r['written']:>10}  {pids}"
        )
    return "\n".join(lines)


def _list(args: argparse.Namespace) -> int:
    emit(args, [p.to_dict() for p in list_pipes()], _render_list)
    return 0


def _show(args: argparse.Namespace) -> int:
    info = pipe_info(args.name).to_dict()
    with Pipe.open(args.name, prefault=False) as pipe:
        info["stats"] = pipe.stats().to_dict()

    def render(d: dict[str, Any]) -> str:
        s = d["stats"]
        lines = [
            f"pipe {d['name']}: {d['shape']}{' lossy' if d['lossy'] else ''}, "
            f"{d['slots']} x {d['slot_size']} B, {d['size_bytes']} B, mode "
            f"{d['mode']:o}, fill {s['fill']}/{s['slots']}, written {s['written']}"
        ]
        for w in s["writers"]:
            lines.append(
                f"  writer {w['index']}: pid {w['pid']} "
                f"{'alive' if w['alive'] else 'gone'} msgs {w['messages']} "
                f"bytes {w['bytes']} waits {w['waits']} full {w['full']}"
            )
        for r in s["readers"]:
            lines.append(
                f"  reader {r['index']}: pid {r['pid']} "
                f"{'alive' if r['alive'] else 'gone'} msgs {r['messages']} "
                f"bytes {r['bytes']} drops {r['drops']} waits {r['waits']}"
            )
        return "\n".join(lines)

    emit(args, info, render)
    return 0


def _clean(args: argparse.Namespace) -> int:
    removed = clean_pipes()
    emit(
        args,
        {"removed": removed},
        lambda d: "\n".join(f"removed {n}" for n in d["removed"]) or "nothing to remove",
    )
    return 0
