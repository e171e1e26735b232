"""Discovery as optional pykernel servers the kernel can start.

Entries (python callables, as an executor entry or wiring file names them):

- ``discovery.servers:lldp_agent`` — LLDP only: advertise, listen, keep the neighbor table.
- ``discovery.servers:discovery`` — LLDP plus UDP echo, shm probe segment, beacon
  responder and the vetter that fills the candidate cache.

Each entry is a server function for ``python -m pykernel.server`` taking a
``ServerContext``; its options (see :class:`~discovery.config.DiscoveryConfig`) come as a
JSON object in ``$PYKERNEL_DISCOVERY_OPTIONS``. In the kernel's own process, use
:func:`build_service` with the options mapping and optional listeners — the narrow
interface to whoever consumes discovery (Hostess) — for a :class:`DiscoveryService` with
``start()`` / ``stop()``. :data:`SERVERS` describes both in a manifest-like form. State
files in the run directory let ``pykernel neighbors`` and ``pykernel candidates`` show what
a running service knows.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from discovery._errors import DiscoveryConfigError
from discovery.agent import AgentConfig, LldpAgent
from discovery.beacon import BeaconKey, BeaconResponder
from discovery.beacon_net import BeaconServer
from discovery.candidates import Candidate, CandidateCache, CandidateListener
from discovery.config import DiscoveryConfig, host_token, load_config
from discovery.frames import require_scapy
from discovery.hints import Hints
from discovery.neighbors import Neighbor, NeighborListener, NeighborTable
from discovery.probe import ShmProbeSegment, UdpEchoServer, sweep_stale_segments
from discovery.state import CANDIDATES_FILE, NEIGHBORS_FILE, default_run_dir, write_state
from discovery.vetter import Vetter

log = logging.getLogger(__name__)

STATE_INTERVAL = 0.5  # at most two state-file writes per second
OPTIONS_ENV = "PYKERNEL_DISCOVERY_OPTIONS"

SERVERS: tuple[dict[str, Any], ...] = (
    {
        "name": "lldp-agent",
        "class": "discovery.lldp",
        "entry": "discovery.servers:lldp_agent",
        "summary": "LLDP (802.1AB) agent: advertises this kernel, keeps the neighbor table",
        "needs": ["CAP_NET_RAW", "scapy (the discovery extra)"],
        "terminals": [],
        "options": ["interfaces", "tx_interval", "hold", "fast_start", "per_interface_cap",
                    "identity", "system_name", "control_port", "transports", "run_dir",
                    "receive_only"],
    },
    {
        "name": "discovery",
        "class": "discovery.full",
        "entry": "discovery.servers:discovery",
        "summary": "LLDP agent + probe responders + beacon + vetter: fills the candidate cache",
        "needs": ["CAP_NET_RAW", "scapy (the discovery extra)", "a beacon passphrase"],
        "terminals": [],
        "options": "all of discovery.config.DiscoveryConfig",
    },
)  # fmt: skip
"""Manifest-like descriptions of the servers this package offers."""


class _Fanout:
    """Deliver neighbor events to several listeners, in order."""

    def __init__(self, *listeners: NeighborListener | None) -> None:
        self._listeners = [x for x in listeners if x is not None]

    def neighbor_added(self, neighbor: Neighbor) -> None:
        for x in self._listeners:
            x.neighbor_added(neighbor)

    def neighbor_changed(self, old: Neighbor, new: Neighbor) -> None:
        for x in self._listeners:
            x.neighbor_changed(old, new)

    def neighbor_removed(self, neighbor: Neighbor, reason: str) -> None:
        for x in self._listeners:
            x.neighbor_removed(neighbor, reason)


class DiscoveryService:
    """The discovery servers of one kernel, started and stopped together.

    Args:
        config: checked options.
        vet: also run echo, shm segment, beacon responder and vetter.
        neighbor_listener: told about neighbors (added/changed/removed).
        candidate_listener: told about candidates (added/dropped), e.g. Hostess.

    """

    def __init__(
        self,
        config: DiscoveryConfig,
        *,
        vet: bool = True,
        neighbor_listener: NeighborListener | None = None,
        candidate_listener: CandidateListener | None = None,
    ) -> None:
        self.config = config
        self.identity = config.resolved_identity()
        self.run_dir = Path(config.run_dir) if config.run_dir else default_run_dir()
        self._vet = vet and config.beacon
        self._neighbor_listener = neighbor_listener
        self.cache = CandidateCache(listener=candidate_listener)
        self.host_token = host_token()
        self.table: NeighborTable | None = None
        self.agent: LldpAgent | None = None
        self.vetter: Vetter | None = None
        self.beacon: BeaconServer | None = None
        self.echo: UdpEchoServer | None = None
        self.shm: ShmProbeSegment | None = None
        self._written: tuple[object, ...] = ()
        self._last_write = 0.0
        self._state_lock = threading.Lock()

    def start(self) -> DiscoveryService:
        """Start every part; on any failure, stop what was started and re-raise."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        cfg = self.config
        if not cfg.receive_only:
            require_scapy()
        hints_kw: dict[str, Any] = {}
        if self._vet:
            key = BeaconKey.derive(cfg.passphrase(), cfg.realm)
            responder = BeaconResponder(key, self.identity)
            self.beacon = BeaconServer(responder, cfg.bind, cfg.beacon_port).start()
            if "udp" in cfg.transports:
                self.echo = UdpEchoServer(cfg.bind, cfg.echo_port).start()
            if "shm" in cfg.transports:
                sweep_stale_segments()
                self.shm = ShmProbeSegment(str(self.beacon.port), self.identity)
            self.vetter = Vetter(
                key, self.identity, self.cache, host_token=self.host_token,
                candidate_ttl=cfg.candidate_ttl, retry_interval=cfg.retry_interval,
                beacon_transport=cfg.beacon_transport, timeout=cfg.probe_timeout,
            )  # fmt: skip
            hints_kw = {
                "beacon_port": self.beacon.port,
                "echo_port": self.echo.port if self.echo else 0,
                "host_token": self.host_token if self.shm else b"",
                "shm_name": self.shm.path.name if self.shm else "",
            }
        hints = Hints(
            identity=self.identity, control_port=cfg.control_port,
            transports=cfg.transports, **hints_kw,
        )  # fmt: skip
        self.table = NeighborTable(
            per_interface_cap=cfg.per_interface_cap,
            listener=_Fanout(self.vetter, self._neighbor_listener),
        )
        agent_cfg = AgentConfig(
            interfaces=cfg.interfaces, tx_interval=cfg.tx_interval, hold=cfg.hold,
            fast_start=cfg.fast_start, system_name=cfg.system_name or None,
            system_description=f"pykernel {self.identity}", hints=hints,
            receive_only=cfg.receive_only,
        )  # fmt: skip
        self.agent = LldpAgent(agent_cfg, self.table, on_tick=self._tick)
        self.agent.start()
        self.write_state(force=True)

    def stop(self) -> None:
        """Send shutdown LLDPDUs, stop every part, remove the state files."""
        if self.agent is not None:
            self.agent.stop()
            self.agent = None
        for part in (self.vetter, self.beacon, self.echo, self.shm):
            if part is not None:
                with contextlib.suppress(Exception):
                    part.close()
        self.vetter = self.beacon = self.echo = self.shm = None
        for name in (NEIGHBORS_FILE, CANDIDATES_FILE):
            with contextlib.suppress(OSError):
                (self.run_dir / name).unlink()

    def __enter__(self) -> DiscoveryService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def ports(self) -> dict[str, int]:
        """Return the ports this service listens on (beacon: TCP and UDP; echo: UDP)."""
        return {
            "beacon": self.beacon.port if self.beacon else 0,
            "echo": self.echo.port if self.echo else 0,
        }

    def neighbors(self) -> list[Neighbor]:
        """Return the live neighbors."""
        return self.table.neighbors() if self.table else []

    def candidates(self) -> list[Candidate]:
        """Return the live candidates."""
        return self.cache.candidates()

    def _tick(self) -> None:
        now = time.monotonic()
        if now - self._last_write < STATE_INTERVAL:
            return
        if self.vetter is not None and self.table is not None:
            self.vetter.tick(self.table.neighbors())
        self.write_state()

    def write_state(self, *, force: bool = False) -> None:
        """Write the neighbor and candidate state files if anything changed."""
        if self.table is None:
            return
        with self._state_lock:
            self._last_write = time.monotonic()
            neighbors = self.table.neighbors()
            candidates = self.cache.candidates()
            agent = self.agent.stats() if self.agent else None
            versions = (self.table.version, self.cache.version, agent.interfaces if agent else ())
            if versions == self._written and not force:
                return
            self._written = versions
            common = {"identity": self.identity, "written_at": time.time()}
            write_state(
                self.run_dir / NEIGHBORS_FILE,
                "neighbors",
                {
                    **common,
                    "neighbors": [n.to_json() for n in neighbors],
                    "stats": self.table.stats().to_json(),
                    "interfaces": list(agent.interfaces) if agent else [],
                    "agent": agent.__dict__ if agent else {},
                },
            )
            write_state(
                self.run_dir / CANDIDATES_FILE,
                "candidates",
                {
                    **common,
                    "candidates": [c.to_json() for c in candidates],
                    "failures": [f.to_json() for f in self.cache.failures()],
                },
            )


def build_service(
    options: Mapping[str, Any],
    *,
    vet: bool = True,
    neighbor_listener: NeighborListener | None = None,
    candidate_listener: CandidateListener | None = None,
) -> DiscoveryService:
    """Build a discovery service in this process (call ``start()``; a built-in server).

    Args:
        options: the discovery options (a wiring file's mapping).
        vet: False for LLDP only (no beacon, no probe responders, no candidates).
        neighbor_listener: told about neighbors.
        candidate_listener: told about candidates (Hostess).

    Raises:
        DiscoveryConfigError: bad options (a missing passphrase is found at ``start()``).

    """
    return DiscoveryService(
        load_config(options),
        vet=vet,
        neighbor_listener=neighbor_listener,
        candidate_listener=candidate_listener,
    )


def options_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read the options the kernel passes in ``$PYKERNEL_DISCOVERY_OPTIONS`` (JSON object).

    Raises:
        DiscoveryConfigError: not JSON, or not an object.

    """
    env = os.environ if environ is None else environ
    text = env.get(OPTIONS_ENV, "") or "{}"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DiscoveryConfigError(f"${OPTIONS_ENV}: not JSON ({exc.msg} at {exc.pos})") from None
    if not isinstance(value, dict):
        raise DiscoveryConfigError(f"${OPTIONS_ENV}: must be a JSON object")
    return value


def _serve(ctx: Any, vet: bool) -> None:
    options = options_from_env()
    if getattr(ctx, "run_dir", None) and "run_dir" not in options:
        options["run_dir"] = ctx.run_dir
    with build_service(options, vet=vet):
        ctx.ready()
        ctx.stopping.wait()


def lldp_agent(ctx: Any) -> None:
    """Server entry ``discovery.servers:lldp_agent``: LLDP only, until the kernel stops it.

    ``ctx`` is a :class:`pykernel.server.ServerContext`; options come from
    ``$PYKERNEL_DISCOVERY_OPTIONS``; ready is reported once the agent runs.
    """
    _serve(ctx, vet=False)


def discovery(ctx: Any) -> None:
    """Server entry ``discovery.servers:discovery``: LLDP + probe + beacon + candidates."""
    _serve(ctx, vet=True)
