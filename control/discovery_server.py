"""The discovery server: discovery started by the kernel, its candidates handed to Hostess.

The wiring file's ``discovery:`` section (see :mod:`control.wiring_discovery`) plans the
entry ``control.discovery_server:run``. It runs :func:`discovery.servers.build_service`
with :class:`HostessPeers` as the candidate listener: each vetted peer kernel becomes a
Hostess guest tagged ``peer`` (plus ``discovery``, ``via:<interface>`` and the section's
``tags``), its identity built from the hints the beacon confirmed, its heartbeat lease
ending when the candidate expires; a dropped candidate leaves Hostess at once, and at stop
every peer this server registered leaves. When the optional ``candidates`` output is
connected, each change is also sent there as one JSON message.

This is the one module of ``control`` that imports ``discovery`` (DESIGN: control starts
discovery as an optional server); ``discovery`` itself needs scapy only to build frames,
so ``control`` stays importable without scapy.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Collection
from typing import Any

from control.hostess.cli import default_db
from control.hostess.errors import HostessError, IdentityError, NotFoundError
from control.hostess.identity import Identity
from control.hostess.lease import MAX_TTL, Lease
from control.hostess.registry import Hostess
from control.manifest import manifest
from control.wiring_discovery import DISCOVERY_MANIFEST
from control.wiring_discovery import peer_identity as hostess_identity
from discovery import DiscoveryConfigError
from discovery.candidates import Candidate
from discovery.servers import build_service, options_from_env
from pykernel.server import ServerError, ready_when_told

log = logging.getLogger(__name__)

PEER_TAGS = ("peer", "discovery")
"""Tags every peer guest carries."""
_IFACE_TAG = re.compile(r"[A-Za-z0-9_.:/+-]{1,60}")
MIN_LEASE = 1.0
"""Shortest heartbeat lease given to a peer (a candidate about to expire still counts)."""

Sink = Callable[[dict[str, Any]], None]


def peer_identity(candidate: Candidate) -> Identity:
    """Return the Hostess identity of the peer kernel behind ``candidate``.

    See :func:`control.wiring_discovery.peer_identity` for the rule.

    Raises:
        IdentityError: the proven identity cannot make a Hostess identity (field named).

    """
    return hostess_identity(candidate.identity)


def peer_metadata(candidate: Candidate, found_by: str) -> dict[str, Any]:
    """Return what Hostess keeps about a peer: where it is and how it was vetted."""
    return {
        "identity": candidate.identity, "address": candidate.address,
        "iface": candidate.iface, "chassis": candidate.chassis, "port": candidate.port,
        "control_port": candidate.hints.control_port,
        "transports": list(candidate.hints.transports),
        "probes": [{"transport": p.transport, "ok": p.ok, "rtt_s": p.rtt_s}
                   for p in candidate.probes],
        "beacon_transport": candidate.beacon_transport,
        "beacon_rtt_s": candidate.beacon_rtt_s, "verified_at": candidate.verified_at,
        "expires_at": candidate.expires_at, "found_by": found_by,
    }  # fmt: skip


class HostessPeers:
    """A :class:`~discovery.candidates.CandidateListener` that keeps peers in Hostess.

    One guest per proven identity: a peer seen on two links is one guest, kept until its
    last candidate is dropped; its lease lasts until its latest candidate's expiry.
    Hostess errors are logged and kept in :attr:`errors`, never raised into discovery.

    Args:
        hostess: the registry.
        found_by: who registers (recorded in each guest's metadata), e.g. ``lab/discovery``.
        tags: extra tags of every peer.
        sink: told about every change as a JSON-ready event (e.g. a pipe writer).
        clock: wall clock (candidate expiries are wall-clock times).

    """

    def __init__(
        self,
        hostess: Hostess,
        *,
        found_by: str = "",
        tags: Collection[str] = (),
        sink: Sink | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.hostess = hostess
        self.found_by = found_by
        self.tags = tuple(dict.fromkeys((*PEER_TAGS, *tags)))
        self.sink = sink
        self._clock = clock
        self._lock = threading.Lock()
        self._peers: dict[str, dict[tuple[str, str, str], Candidate]] = {}
        self._registered: set[str] = set()
        self.errors: list[str] = []
        """Hostess refusals, newest last (at most 100)."""

    # -- CandidateListener ----------------------------------------------------------

    def candidate_added(self, candidate: Candidate) -> None:
        """Register (or re-register) the peer behind a candidate that passed vetting."""
        try:
            ident = peer_identity(candidate)
        except IdentityError as exc:
            self._failed(f"peer {candidate.identity!r} on {candidate.iface}: {exc}")
            return
        key = str(ident.uuid)
        with self._lock:
            for uid, entries in list(self._peers.items()):  # the key moved to another peer
                if uid != key and entries.pop(candidate.key, None) is not None:
                    self._settle(uid)
            self._peers.setdefault(key, {})[candidate.key] = candidate
            self._settle(key, ident)
        self._tell("added", candidate)

    def candidate_dropped(self, candidate: Candidate, reason: str) -> None:
        """Remove the peer once none of its candidates is left."""
        with self._lock:
            for uid, entries in list(self._peers.items()):
                if entries.pop(candidate.key, None) is not None:
                    self._settle(uid)
        self._tell("dropped", candidate, reason)

    # -- state ------------------------------------------------------------------------

    def peers(self) -> list[str]:
        """Return the UUIDs of the peers registered in Hostess now."""
        with self._lock:
            return sorted(self._registered)

    def close(self) -> None:
        """Remove every peer this listener registered (at stop)."""
        with self._lock:
            for uid in list(self._peers):
                self._peers[uid].clear()
                self._settle(uid)

    def _settle(self, uid: str, ident: Identity | None = None) -> None:
        """Make Hostess match ``self._peers[uid]`` (call with the lock held)."""
        entries = self._peers.get(uid, {})
        self._registered.discard(uid)
        with contextlib.suppress(NotFoundError):
            self._call(self.hostess.leave, uid)
        if not entries:
            self._peers.pop(uid, None)
            return
        latest = max(entries.values(), key=lambda c: c.expires_at)
        ttl = min(max(latest.expires_at - self._clock(), MIN_LEASE), MAX_TTL)
        tags = list(self.tags)
        if _IFACE_TAG.fullmatch(latest.iface):
            tags.append(f"via:{latest.iface}")
        try:
            self.hostess.register(
                ident or peer_identity(latest), (), tags=tags,
                metadata=peer_metadata(latest, self.found_by), lease=Lease.heartbeat(ttl),
            )  # fmt: skip
            self._registered.add(uid)
        except HostessError as exc:
            self._failed(f"peer {latest.identity!r}: {exc}")

    def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        try:
            return method(*args)
        except NotFoundError:
            raise
        except HostessError as exc:
            self._failed(str(exc))
            return None

    def _failed(self, message: str) -> None:
        log.warning("hostess: %s", message)
        self.errors = [*self.errors[-99:], message]

    def _tell(self, event: str, candidate: Candidate, reason: str = "") -> None:
        if self.sink is None:
            return
        try:
            self.sink({"event": event, "reason": reason, "candidate": candidate.to_json()})
        except Exception:  # the sink's trouble must not stop discovery
            log.exception("candidates sink failed")


def pipe_sink(writer: Any) -> Sink:
    """Send each event as one JSON message, dropping it when the pipe is full or too small."""

    def send(event: dict[str, Any]) -> None:
        data = json.dumps(event, sort_keys=True, separators=(",", ":")).encode()
        try:
            writer.send_nowait(data)
        except Exception as exc:  # full, reader gone, message over the slot: drop it
            log.warning("candidates output: event dropped (%s)", exc)

    return send


@manifest(servername=DISCOVERY_MANIFEST.servername, class_hex=DISCOVERY_MANIFEST.class_hex,
          owner=DISCOVERY_MANIFEST.owner, auth_flag=DISCOVERY_MANIFEST.auth_flag,
          auth_mechanism=DISCOVERY_MANIFEST.auth_mechanism,
          terminals=DISCOVERY_MANIFEST.terminals)
@ready_when_told
def run(ctx: Any) -> None:
    """Server entry ``control.discovery_server:run``: discovery feeding Hostess until stopped.

    ``ctx`` is a :class:`pykernel.server.ServerContext`. Options come from
    ``$PYKERNEL_DISCOVERY_OPTIONS`` (``hostess_db`` and ``tags`` are read here, the rest
    is discovery's); state files go to the kernel's run directory.

    Raises:
        ServerError: bad options or no passphrase: exit 78 (``EX_CONFIG``), which the
            executor never restarts and which fails the boot (readiness waits for it).
        HostessError: the registry cannot be opened.

    """
    try:
        _serve(ctx)
    except DiscoveryConfigError as exc:
        raise ServerError(f"discovery: {exc}") from exc


def _serve(ctx: Any) -> None:
    options = options_from_env()
    db = options.pop("hostess_db", None) or default_db()
    tags = options.pop("tags", [])
    if ctx.run_dir and "run_dir" not in options:
        options["run_dir"] = ctx.run_dir
    with Hostess(db) as hostess:
        peers = HostessPeers(hostess, found_by=f"{ctx.system}/{ctx.server}", tags=tags)
        service = build_service(options, candidate_listener=peers)
        try:
            with service:
                if ctx.connected("candidates"):
                    peers.sink = pipe_sink(ctx.terminal("candidates"))
                ctx.ready()
                shown = ""
                while not ctx.stopping.wait(1.0):
                    text = (f"{len(service.neighbors())} neighbors, "
                            f"{len(peers.peers())} peers in Hostess")
                    if text != shown:  # the kernel shows it beside the server's state
                        ctx.status(text)
                        shown = text
        finally:
            peers.close()
