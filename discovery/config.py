"""Discovery options: what a wiring file or the command line may say, checked once.

Secrets never appear here: the beacon passphrase is read from ``passphrase_file`` or the
environment variable named by ``passphrase_env``.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from discovery._errors import DiscoveryConfigError

PASSPHRASE_ENV = "PYKERNEL_BEACON_PASSPHRASE"


@dataclass(frozen=True)
class DiscoveryConfig:
    """Options of the discovery servers (each one a wiring-file key)."""

    interfaces: tuple[str, ...] = ()
    """Interface names or patterns; empty: every Ethernet interface but lo."""
    tx_interval: float = 30.0
    hold: int = 4
    fast_start: int = 4
    per_interface_cap: int = 64
    identity: str = ""
    """The kernel's identity; default ``<fqdn>:kernel``."""
    system_name: str = ""
    """LLDP System Name; default the hostname."""
    control_port: int = 0
    """The control surface's TCP port, advertised for the probe (0: none)."""
    transports: tuple[str, ...] = ("tcp", "udp", "shm")
    bind: str = ""
    """Address the beacon and echo servers bind ("" = all of this namespace)."""
    beacon: bool = True
    """Run the beacon responder and vet neighbors (needs a passphrase)."""
    beacon_port: int = 0
    """0: any free port (advertised in the hints)."""
    echo_port: int = 0
    passphrase_file: str = ""
    passphrase_env: str = PASSPHRASE_ENV
    realm: str = "default"
    beacon_transport: str = "tcp"
    candidate_ttl: float = 300.0
    retry_interval: float = 5.0
    probe_timeout: float = 2.0
    run_dir: str = ""
    """Where state files go; default :func:`discovery.state.default_run_dir`."""
    receive_only: bool = False

    def resolved_identity(self) -> str:
        """Return the identity, defaulting to ``<fqdn>:kernel``."""
        return self.identity or f"{socket.getfqdn()}:kernel"

    def passphrase(self) -> str:
        """Read the beacon passphrase from the file, else the environment.

        Raises:
            DiscoveryConfigError: neither gives one.

        """
        if self.passphrase_file:
            try:
                return Path(self.passphrase_file).read_text().rstrip("\n")
            except OSError as exc:
                raise DiscoveryConfigError(
                    f"passphrase_file {self.passphrase_file}: {exc.strerror}"
                ) from None
        value = os.environ.get(self.passphrase_env, "")
        if not value:
            raise DiscoveryConfigError(
                f"beacon needs a passphrase: set passphrase_file or ${self.passphrase_env}"
            )
        return value


_TYPES: dict[str, type | tuple[type, ...]] = {
    "interfaces": list, "tx_interval": (int, float), "hold": int, "fast_start": int,
    "per_interface_cap": int, "identity": str, "system_name": str, "control_port": int,
    "transports": list, "bind": str, "beacon": bool, "beacon_port": int, "echo_port": int,
    "passphrase_file": str, "passphrase_env": str, "realm": str, "beacon_transport": str,
    "candidate_ttl": (int, float), "retry_interval": (int, float),
    "probe_timeout": (int, float), "run_dir": str, "receive_only": bool,
}  # fmt: skip
_RANGES: dict[str, tuple[float, float]] = {
    "tx_interval": (0.05, 3600), "hold": (1, 100), "fast_start": (0, 8),
    "per_interface_cap": (1, 4096), "control_port": (0, 65535), "beacon_port": (0, 65535),
    "echo_port": (0, 65535), "candidate_ttl": (1, 86400), "retry_interval": (0.1, 3600),
    "probe_timeout": (0.05, 60),
}  # fmt: skip


def load_config(options: Mapping[str, Any], *, where: str = "discovery options") -> DiscoveryConfig:
    """Check ``options`` (e.g. a wiring file's discovery section) and build the config.

    Raises:
        DiscoveryConfigError: an unknown key, a wrong type or a value out of range, named
            with ``where``.

    """
    if not isinstance(options, Mapping):
        raise DiscoveryConfigError(f"{where}: expected a mapping, got {type(options).__name__}")
    known = {f.name for f in fields(DiscoveryConfig)}
    values: dict[str, Any] = {}
    for key, value in options.items():
        if key not in known:
            raise DiscoveryConfigError(f"{where}: unknown option {key!r}")
        want = _TYPES[key]
        if isinstance(value, bool) and want is not bool:
            raise DiscoveryConfigError(f"{where}: {key} must not be a boolean, got {value!r}")
        if not isinstance(value, want):
            raise DiscoveryConfigError(f"{where}: {key} has the wrong type: {value!r}")
        if key in _RANGES:
            lo, hi = _RANGES[key]
            if not lo <= value <= hi:
                raise DiscoveryConfigError(f"{where}: {key} {value!r} outside {lo:g}-{hi:g}")
        if isinstance(value, list):
            if not all(isinstance(v, str) and v for v in value):
                raise DiscoveryConfigError(f"{where}: {key} must be a list of names: {value!r}")
            value = tuple(value)
        values[key] = value
    if values.get("beacon_transport", "tcp") not in ("tcp", "udp"):
        raise DiscoveryConfigError(f"{where}: beacon_transport must be tcp or udp")
    return DiscoveryConfig(**values)


def host_token() -> bytes:
    """Return this machine's same-host token (hash of machine-id and boot id, not secret)."""
    parts = []
    for path in ("/etc/machine-id", "/proc/sys/kernel/random/boot_id"):
        try:
            parts.append(Path(path).read_bytes().strip())
        except OSError:
            parts.append(b"")
    return hashlib.sha256(b"pykernel-host-token\0" + b"\0".join(parts)).digest()[:16]
