"""The discovery verbs of the ``pykernel`` command.

- ``pykernel neighbors [--json]``: the neighbor table of the running discovery service.
- ``pykernel candidates [--json]``: its candidates, and why other neighbors are not.
- ``pykernel lldp send --iface IF``: send our LLDPDU (``--shutdown`` for TTL 0).
- ``pykernel lldp listen --iface IF``: print the LLDPDUs heard, or why each was rejected.
- ``pykernel discovery run [--config FILE]``: run discovery in the foreground.
- ``pykernel discovery servers [--json]``: the servers this package offers.

``neighbors`` and ``candidates`` read the state files in the run directory
(``--run-dir``, default ``$PYKERNEL_RUN_DIR`` or /run/pykernel). Verbs that build frames
need scapy; without it they fail with one line naming the ``discovery`` extra.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from discovery._errors import DiscoveryConfigError, FrameError, InterfaceError
from discovery._ifaces import iface_info
from discovery.agent import AgentConfig, default_chassis, local_frame, open_lldp_socket
from discovery.hints import Hints
from discovery.state import (
    CANDIDATES_FILE,
    NEIGHBORS_FILE,
    default_run_dir,
    read_state,
)
from discovery.tlv import CHASSIS_MAC, parse_frame
from pykernel.cli import add_json_flag, emit
from pykernel.liveness import pid_alive


def register(sub: argparse._SubParsersAction) -> None:
    """Add the discovery verbs to the ``pykernel`` command."""
    p = sub.add_parser("neighbors", help="show the LLDP neighbor table")
    _run_dir_flag(p)
    add_json_flag(p)
    p.set_defaults(func=cmd_neighbors)

    p = sub.add_parser("candidates", help="show neighbors that passed probe and beacon")
    _run_dir_flag(p)
    add_json_flag(p)
    p.set_defaults(func=cmd_candidates)

    lldp = sub.add_parser("lldp", help="send or listen to LLDP frames (operators)")
    lsub = lldp.add_subparsers(dest="lldp_verb", metavar="ACTION", parser_class=type(lldp))
    lsub.required = True
    p = lsub.add_parser("send", help="send our LLDPDU on an interface")
    p.add_argument("--iface", required=True, help="interface to send on")
    p.add_argument("--count", type=int, default=1, help="frames to send (default 1)")
    p.add_argument("--interval", type=_seconds, default=1.0,
                   help=f"seconds between frames, 0 to {MAX_SECONDS:g} (default 1)")
    p.add_argument("--ttl", type=int, default=120, help="TTL to advertise (default 120)")
    p.add_argument("--shutdown", action="store_true", help="send a shutdown LLDPDU (TTL 0)")
    p.add_argument("--system-name", default=None, help="System Name (default: hostname)")
    p.add_argument("--identity", default=None, help="also send pykernel hints with IDENTITY")
    p.add_argument("--control-port", type=int, default=0, help="control port in the hints")
    add_json_flag(p)
    p.set_defaults(func=cmd_lldp_send)
    p = lsub.add_parser("listen", help="print LLDPDUs heard on an interface")
    p.add_argument("--iface", required=True, help="interface to listen on")
    p.add_argument("--seconds", type=_seconds, default=10.0,
                   help=f"how long, 0 to {MAX_SECONDS:g} seconds (default 10)")
    p.add_argument("--count", type=int, default=0, help="stop after N frames (0: no limit)")
    add_json_flag(p)
    p.set_defaults(func=cmd_lldp_listen)

    disc = sub.add_parser("discovery", help="run discovery in the foreground, list servers")
    dsub = disc.add_subparsers(dest="discovery_verb", metavar="ACTION", parser_class=type(disc))
    dsub.required = True
    p = dsub.add_parser("run", help="run LLDP, probe, beacon and vetting until stopped")
    p.add_argument("--config", default=None, help="YAML/JSON file of discovery options")
    p.add_argument("--lldp-only", action="store_true", help="no beacon, probe or candidates")
    p.set_defaults(func=cmd_discovery_run)
    p = dsub.add_parser("servers", help="describe the servers discovery offers")
    add_json_flag(p)
    p.set_defaults(func=cmd_discovery_servers)


MAX_SECONDS = 7 * 86400.0
"""Longest ``--interval``/``--seconds`` accepted: a week (sleep/timeouts overflow far above)."""


def _seconds(text: str) -> float:
    """Parse an option in seconds: finite, from 0 to MAX_SECONDS (nan, inf, -1 refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or not 0 <= value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(
            f"{text!r} seconds is out of range: need a finite number from 0 to {MAX_SECONDS:g}")
    return value


def _run_dir_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-dir", default=None, help="run directory (default: $PYKERNEL_RUN_DIR)")


def _load(args: argparse.Namespace, name: str, kind: str) -> tuple[Path, dict[str, Any] | None]:
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir()
    return run_dir, read_state(run_dir / name, kind)


def _header(run_dir: Path, doc: dict[str, Any] | None) -> dict[str, Any]:
    running = doc is not None and pid_alive(doc.get("pid"))
    return {
        "run_dir": str(run_dir),
        "running": running,
        "identity": doc.get("identity") if doc else None,
    }


def cmd_neighbors(args: argparse.Namespace) -> int:
    """``pykernel neighbors``: print the neighbor table."""
    run_dir, doc = _load(args, NEIGHBORS_FILE, "neighbors")
    now = time.time()
    data = _header(run_dir, doc)
    data["neighbors"] = [n for n in (doc or {}).get("neighbors", []) if n["expires_at"] > now]
    data["stats"] = (doc or {}).get("stats", {})
    data["interfaces"] = (doc or {}).get("interfaces", [])
    emit(args, data, _render_neighbors)
    return 0


def _not_running(data: dict[str, Any]) -> str:
    return f"no discovery service running (no live state in {data['run_dir']})"


def _render_neighbors(data: dict[str, Any]) -> str:
    if not data["running"]:
        return _not_running(data)
    now = time.time()
    rows = [("IFACE", "CHASSIS", "PORT", "SYSTEM", "EXPIRES", "ADDRESS", "PYKERNEL")]
    for n in data["neighbors"]:
        hints = n.get("hints") or {}
        rows.append((
            n["iface"], n["chassis"], n["port"], n.get("system_name") or "-",
            f"{max(0, n['expires_at'] - now):.0f}s",
            ",".join(n.get("management_addresses") or []) or "-",
            hints.get("identity") or ("bad hints" if n.get("hints_error") else "-"),
        ))  # fmt: skip
    s = data["stats"]
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(s.get("rejected", {}).items()))
    foot = (
        f"{len(data['neighbors'])} neighbors on {', '.join(data['interfaces']) or 'no interface'}"
        f"; frames {s.get('frames', 0)}, rejected {s.get('rejected_total', 0)}"
        + (f" ({rejected})" if rejected else "")
        + f", unrecognized TLVs {s.get('unrecognized_tlvs', 0)}"
    )
    return _table(rows) + foot


def cmd_candidates(args: argparse.Namespace) -> int:
    """``pykernel candidates``: print the candidates and the last failures."""
    run_dir, doc = _load(args, CANDIDATES_FILE, "candidates")
    now = time.time()
    data = _header(run_dir, doc)
    data["candidates"] = [c for c in (doc or {}).get("candidates", []) if c["expires_at"] > now]
    data["failures"] = (doc or {}).get("failures", [])
    emit(args, data, _render_candidates)
    return 0


def _render_candidates(data: dict[str, Any]) -> str:
    if not data["running"]:
        return _not_running(data)
    rows = [("IFACE", "IDENTITY", "ADDRESS", "PROBES", "BEACON", "EXPIRES")]
    now = time.time()
    for c in data["candidates"]:
        probes = " ".join(
            f"{p['transport']}:{p['rtt_s'] * 1000:.2f}ms" for p in c["probes"] if p["ok"]
        )
        rows.append((
            c["iface"], c["identity"], c["address"], probes or "-",
            f"{c['beacon_transport']}:{c['beacon_rtt_s'] * 1000:.2f}ms",
            f"{max(0, c['expires_at'] - now):.0f}s",
        ))  # fmt: skip
    out = _table(rows) + f"{len(data['candidates'])} candidates\n"
    for f in data["failures"]:
        out += f"not a candidate: {f['iface']} {f['chassis']} {f['port']}: {f['stage']}: "
        out += f"{f['detail']}\n"
    return out


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "".join(
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n"
        for r in rows
    )


def _iface(name: str) -> Any:
    try:
        info = iface_info(name, socket.if_nametoindex(name))
    except (OSError, ValueError):  # ValueError: a NUL in the name
        info = None
    if info is None:
        raise InterfaceError(f"interface {name!r} does not exist in this network namespace")
    return info


def cmd_lldp_send(args: argparse.Namespace) -> int:
    """``pykernel lldp send``: send our LLDPDU ``--count`` times on one interface."""
    if args.count < 1 or not 0 <= args.ttl <= 65535:  # --interval is checked by _seconds
        raise DiscoveryConfigError("--count must be >= 1, --ttl 0-65535")
    info = _iface(args.iface)
    hints = None
    if args.identity:
        hints = Hints(identity=args.identity, control_port=args.control_port, transports=("tcp",))
    cfg = AgentConfig(interfaces=(info.name,), system_name=args.system_name, hints=hints)
    ttl = 0 if args.shutdown else args.ttl
    frame = local_frame(cfg, default_chassis() or (CHASSIS_MAC, info.mac), info, ttl)
    with open_lldp_socket(info) as sock:
        for i in range(args.count):
            if i:
                time.sleep(args.interval)
            sock.send(frame)
    emit(
        args,
        {"iface": info.name, "sent": args.count, "ttl": ttl, "bytes": len(frame)},
        lambda d: f"sent {d['sent']} LLDPDU(s) of {d['bytes']} bytes, TTL {d['ttl']}, "
        f"on {d['iface']}",
    )
    return 0


def cmd_lldp_listen(args: argparse.Namespace) -> int:
    """``pykernel lldp listen``: print every LLDPDU heard (or why it was rejected)."""
    info = _iface(args.iface)
    heard: list[dict[str, Any]] = []
    deadline = time.monotonic() + args.seconds
    with open_lldp_socket(info) as sock:
        while time.monotonic() < deadline and (args.count <= 0 or len(heard) < args.count):
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data, addr = sock.recvfrom(9216)
            except TimeoutError:
                break
            if addr[2] == 4:  # PACKET_OUTGOING: our own
                continue
            record = _describe(data)
            heard.append(record)
            if not args.json:
                print(_render_frame(record), flush=True)
    if args.json:
        emit(args, {"iface": info.name, "frames": heard}, str)
    return 0


def _describe(frame: bytes) -> dict[str, Any]:
    try:
        eth = parse_frame(frame)
    except FrameError as exc:
        return {"ok": False, "reason": exc.reason, "offset": exc.offset, "error": str(exc)}
    p = eth.lldpdu
    return {
        "ok": True, "chassis": p.chassis_text(), "port": p.port_text(), "ttl": p.ttl,
        "system_name": p.system_name, "system_description": p.system_description,
        "management_addresses": [m.text() for m in p.management_addresses],
        "org_tlvs": [{"oui": o.oui.hex(), "subtype": o.subtype, "data": o.data.hex()}
                     for o in p.org_tlvs],
        "unrecognized": p.unrecognized,
    }  # fmt: skip


def _render_frame(r: dict[str, Any]) -> str:
    if not r["ok"]:
        return f"rejected: {r['error']}"
    return (
        f"chassis {r['chassis']} port {r['port']} ttl {r['ttl']} "
        f"system {r['system_name'] or '-'} addresses {','.join(r['management_addresses']) or '-'}"
    )


def cmd_discovery_run(args: argparse.Namespace) -> int:
    """``pykernel discovery run``: run discovery until SIGINT/SIGTERM."""
    from discovery.servers import build_service  # the heavier import, only here

    options: Any = {}
    if args.config:
        try:
            options = yaml.safe_load(Path(args.config).read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise DiscoveryConfigError(f"{args.config}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise DiscoveryConfigError(f"{args.config}: not UTF-8 text (byte {exc.start}: "
                                       f"{exc.reason})") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or "syntax error"
            if isinstance(exc, yaml.reader.ReaderError):  # a control character: no mark
                where = f" at character {exc.position}"
                char = exc.character
                problem = f"unacceptable character U+{char:04X}" if isinstance(char, int) \
                    else f"unacceptable byte {char!r}"
            raise DiscoveryConfigError(f"{args.config}: not YAML/JSON{where}: {problem}") from None
    service = build_service(options, vet=not args.lldp_only)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with service:
        ready = {"ready": True, "identity": service.identity, "ports": service.ports(),
                 "run_dir": str(service.run_dir)}  # fmt: skip
        print(json.dumps(ready, sort_keys=True), flush=True)
        stop.wait()
    return 0


def cmd_discovery_servers(args: argparse.Namespace) -> int:
    """``pykernel discovery servers``: describe the servers discovery offers."""
    from discovery.servers import SERVERS

    emit(
        args,
        list(SERVERS),
        lambda s: "".join(f"{x['entry']}: {x['summary']}\n" for x in s),
    )
    return 0

