"""Keep Hostess in step with a running kernel, from outside the kernel.

:class:`KernelHooks` is an executor subscriber (``kernel.subscribe(hooks)``): a planned
server registers when it becomes ``ready`` (its lease tied to its process) and leaves when
it stops, fails or waits to restart. With a :class:`~control.state.SystemState` it also
exchanges the connectome: after every change of the state's connectome (a watcher thread on
``state.wait_change``) and after every arrival or departure, Hostess records the
connections whose two servers are registered, under the state's connectome ID and version.
So Hostess and the control surface agree on every connection whose ends are up.

A guest's server name is the server's *instance* name in the wiring file (two instances
may share one manifest), and its UUID is derived from the host, system and instance, so a
restarted server keeps its identity. The other fields come from the manifest.

Hostess errors never reach the executor's loop: they are kept in :attr:`KernelHooks.errors`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid as uuidlib
from collections.abc import Callable
from typing import Any

from control.hostess.errors import HostessError, InputError, NotFoundError
from control.hostess.identity import Identity, check_fqdn
from control.hostess.lease import Lease
from control.hostess.records import Connectome, TerminalSpec
from control.hostess.registry import Hostess

NAMESPACE = uuidlib.UUID("6c1f5d0e-8a5b-4e57-9a43-2f6b1b7f4a10")
"""UUID namespace of kernel-registered guests (uuid5 of ``fqdn/system/server``)."""
ARRIVE = frozenset({"ready"})
"""Executor states in which a server is registered."""
DEPART = frozenset({"stopping", "stopped", "failed", "backoff"})
"""Executor states in which a server leaves."""


def server_identity(fqdn: str, system: str, server: Any) -> Identity:
    """Return the identity of planned ``server`` of ``system`` on host ``fqdn``.

    Raises:
        IdentityError: if the manifest's fields do not make a valid identity.

    """
    manifest = server.manifest
    uid = uuidlib.uuid5(NAMESPACE, f"{fqdn}/{system}/{server.name}")
    return Identity.parse(
        f"{fqdn}:{server.name}:{manifest.class_hex}:{manifest.owner}:{manifest.auth_flag}:"
        f"{manifest.auth_mechanism}:{uid}"
    )


class KernelHooks:
    """Registers a kernel's servers with Hostess and exchanges its connectome.

    Args:
        hostess: the registry.
        plan: the kernel's plan (servers with manifests).
        state: the live state whose connectome to exchange, or None.
        fqdn: this host's name (default: ``socket.getfqdn()``).
        tags: tags every registered server carries.

    Raises:
        IdentityError: if ``fqdn`` is not a valid host name.

    """

    def __init__(
        self,
        hostess: Hostess,
        plan: Any,
        *,
        state: Any = None,
        fqdn: str | None = None,
        tags: tuple[str, ...] = (),
    ) -> None:
        self.hostess = hostess
        self.state = state
        self.fqdn = check_fqdn(fqdn or socket.getfqdn())
        self.tags = tags
        self.errors: list[HostessError] = []
        self._system = plan.system
        self._servers = {server.name: server for server in plan.servers}
        self._identities = {
            name: server_identity(self.fqdn, plan.system, server)
            for name, server in self._servers.items()
        }
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def identity(self, server: str) -> Identity:
        """Return the identity a planned server registers with."""
        return self._identities[server]

    def __call__(self, status: Any, previous: Any) -> None:
        """Take one executor change (``status`` a ServiceStatus); built-ins are ignored."""
        if status.name not in self._servers:
            return
        state = str(getattr(status.state, "value", status.state))
        if state in ARRIVE and status.pid:
            self._guard(lambda: self.arrive(status.name, status.pid))
        elif state in DEPART:
            self._guard(lambda: self.depart(status.name))
        else:
            return
        self._guard(self.exchange)

    def _guard(self, action: Callable[[], object]) -> None:
        try:
            action()
        except HostessError as exc:
            self.errors.append(exc)

    def arrive(self, server: str, pid: int) -> None:
        """Register planned ``server``, running as process ``pid``.

        Raises:
            HostessError: if Hostess refuses it.

        """
        spec = self._servers[server]
        terminals = [
            TerminalSpec(t.name, t.direction, t.message_size) for t in spec.manifest.terminals
        ]
        try:
            lease = Lease.process(pid)
        except InputError:
            return  # it died already; the executor will report that next
        with self._lock:
            self.depart(server)  # a restart: the old registration is ours to replace
            self.hostess.register(
                self._identities[server],
                terminals,
                tags=self.tags,
                lease=lease,
                metadata={"system": self._system, "pid": pid},
            )

    def depart(self, server: str) -> None:
        """Remove planned ``server`` from Hostess (nothing if it is not there)."""
        with contextlib.suppress(NotFoundError):
            self.hostess.leave(self._identities[server].uuid)

    def exchange(self) -> Connectome | None:
        """Record the state's connectome, limited to connections whose servers are here.

        Returns:
            What Hostess now holds, or None without a state.

        Raises:
            HostessError: if Hostess refuses it.

        """
        if self.state is None:
            return None
        with self._lock:
            view = self.state.connectome_json()
            present = {
                guest.identity.servername for guest in self.hostess.query(f"fqdn={self.fqdn}")
            }
            connections = [
                (conn["id"], f"{self.fqdn}/{conn['source']}", f"{self.fqdn}/{conn['target']}")
                for conn in view["connections"]
                if {conn["source"].split(".", 1)[0], conn["target"].split(".", 1)[0]} <= present
            ]
            return self.hostess.record_connectome(
                view["id"] or self._system, view["version"], connections
            )

    def start(self) -> KernelHooks:
        """Watch the state and exchange the connectome whenever it changes."""
        if self.state is not None and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._watch, name="hostess-connectome", daemon=True
            )
            self._thread.start()
        return self

    def _watch(self) -> None:
        seen = None
        revision = self.state.revision
        while not self._stop.is_set():
            revision = self.state.wait_change(revision, 0.5)
            summary = self.state.system_json()["connectome"]
            key = (summary["id"], summary["version"])
            if key != seen:
                seen = key
                self._guard(self.exchange)

    def stop(self) -> None:
        """Stop watching; every server still registered leaves."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for server in self._servers:
            self._guard(lambda server=server: self.depart(server))
        self._guard(self.exchange)

    def __enter__(self) -> KernelHooks:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
