"""The wiring file's ``discovery:`` section: discovery as an ordinary planned server.

::

    discovery:
      interfaces: [eth0]              # names or patterns; default every Ethernet link but lo
      tx_interval: 30                 # LLDP, seconds; hold 4 (TTL = interval x hold + 1)
      passphrase_file: beacon.secret  # relative to this file; or passphrase_env: VAR
      hostess_db: hostess.sqlite      # where vetted peers are registered (relative)
      tags: [lab]                     # extra Hostess tags of every peer (besides `peer`)

When enabled (the default once the section is there), it expands into one server, named
``discovery`` unless ``name`` says otherwise: python entry
``control.discovery_server:run`` with :data:`DISCOVERY_MANIFEST`, restart ``on-failure``,
and its options as canonical JSON in ``$PYKERNEL_DISCOVERY_OPTIONS`` (relative paths made
absolute). The kernel starts it like any other server. Every field is checked here with a
located diagnostic; control does not import ``discovery`` to do it (the server re-checks
the options when it starts). The passphrase itself never appears in a wiring file.

Environment checks (also lint errors): scapy must be importable unless ``receive_only``;
``passphrase_file`` must exist and be readable (world-readable is a warning); without one,
an unset passphrase variable is a warning.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import stat
import uuid as uuidlib
from dataclasses import dataclass
from typing import Any, Protocol

from control.hostess.errors import IdentityError, InputError
from control.hostess.identity import Identity, check_fqdn, check_name
from control.hostess.records import check_tags
from control.manifest import Manifest, Path, TerminalSpec, type_name
from control.wiring import NAME_RE, ServerSpec

DISCOVERY_ENTRY = "control.discovery_server:run"
"""The python entry of the discovery server."""
OPTIONS_ENV = "PYKERNEL_DISCOVERY_OPTIONS"
"""Environment variable carrying the server's options (a JSON object)."""
DEFAULT_PASSPHRASE_ENV = "PYKERNEL_BEACON_PASSPHRASE"
"""Where the beacon passphrase is read from when the section names no file."""
DEFAULT_NAME = "discovery"
"""Server instance name when the section gives none."""
DEFAULT_RESTART = "on-failure"
"""Restart policy of the discovery server when the section gives none."""
PEER_CLASS_HEX = "0x706b00"
"""Hostess class of a peer kernel registered by discovery ("pk" 00)."""
DISCOVERY_MANIFEST = Manifest(
    servername="discovery", class_hex="0x706b01", owner="pykernel", auth_flag=1,
    auth_mechanism="passphrase",
    terminals=(TerminalSpec("candidates", "output", 4096),),
)  # fmt: skip
"""The discovery server's manifest: peers authenticate by passphrase (the beacon); its
optional ``candidates`` output carries one JSON event per candidate added or dropped."""

_NUMBER = (int, float)
_NUMBERS: dict[str, tuple[float, float]] = {
    "tx_interval": (0.05, 3600), "candidate_ttl": (1, 86400), "retry_interval": (0.1, 3600),
    "probe_timeout": (0.05, 60),
}  # fmt: skip
_INTEGERS: dict[str, tuple[int, int]] = {
    "hold": (1, 100), "fast_start": (0, 8), "per_interface_cap": (1, 4096),
    "control_port": (0, 65535), "beacon_port": (0, 65535), "echo_port": (0, 65535),
}  # fmt: skip
_STRINGS = ("identity", "system_name", "bind", "realm")
_BOOLEANS = ("enabled", "beacon", "receive_only")
_CHOICES: dict[str, tuple[str, ...]] = {"beacon_transport": ("tcp", "udp")}
_PATHS = ("passphrase_file", "hostess_db")
_LISTS = ("interfaces", "transports", "tags")
_SERVER_FIELDS = ("name", "restart", "backoff")  # how the server runs, not its options
_CONTROL_OPTIONS = ("hostess_db", "tags")  # read by control.discovery_server itself

DISCOVERY_FIELDS: tuple[str, ...] = (
    *_BOOLEANS, *_SERVER_FIELDS, *_NUMBERS, *_INTEGERS, *_STRINGS, *_CHOICES, *_PATHS,
    *_LISTS, "passphrase_env",
)  # fmt: skip
"""Every field the section may hold."""
OPTION_FIELDS: tuple[str, ...] = tuple(
    f for f in DISCOVERY_FIELDS if f not in ("enabled", *_SERVER_FIELDS, *_CONTROL_OPTIONS)
)
"""The fields passed on as discovery options (each a ``DiscoveryConfig`` field)."""

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TRANSPORT = re.compile(r"[a-z0-9-]{1,16}")
_SECRETS = ("passphrase", "password", "secret", "key")
MAX_IDENTITY = 200  # bytes, as the LLDP hints carry it


PEER_NAMESPACE = uuidlib.UUID("0b7e4d52-3c1a-5f0e-9d4b-7a2f6c8e1d35")
"""UUID namespace of peer guests: uuid5 of the identity the beacon proved."""
PEER_OWNER = "peer"
"""Owner field of a peer guest's identity (its own owner is not advertised)."""


def peer_identity(text: str) -> Identity:
    """Return the Hostess identity under which peers register a kernel identified as ``text``.

    A full identity (``fqdn:servername:classHex:owner:authFlag:authMechanism:uuid``) is
    kept. The usual kernel identity ``<fqdn>[:<servername>]`` becomes
    ``fqdn:servername:706b00:peer:1:passphrase:uuid5(text)`` (servername default
    ``kernel``): authenticated by passphrase, which is what the beacon does.

    Raises:
        IdentityError: ``text`` cannot make a Hostess identity (the field is named).

    """
    if text.count(":") == 6:
        return Identity.parse(text)
    host, _, server = text.partition(":")
    fqdn = check_fqdn(host)
    servername = check_name(server or "kernel", "servername")
    uid = uuidlib.uuid5(PEER_NAMESPACE, text)
    return Identity.parse(f"{fqdn}:{servername}:{PEER_CLASS_HEX}:{PEER_OWNER}:1:passphrase:{uid}")


class Checks(Protocol):
    """What the section reader needs from the wiring reader (its diagnostics and helpers)."""

    def error(self, path: Path, code: str, message: str, severity: str = "error") -> None:
        """Record a located diagnostic."""

    def mapping(self, value: Any, path: Path, allowed: tuple[str, ...] | None) -> dict[str, Any]:
        """Check a mapping and its keys."""

    def restart(self, value: Any, path: Path) -> str | None:
        """Check a restart policy."""

    def backoff(self, value: Any, path: Path,
                default: tuple[float, float]) -> tuple[float, float] | None:
        """Check a backoff mapping."""


@dataclass(frozen=True)
class DiscoverySpec:
    """The ``discovery:`` section, checked.

    Attributes:
        enabled: whether the server is planned.
        name: its server instance name.
        restart: its restart policy.
        backoff_initial: first restart delay (s).
        backoff_max: restart delay cap (s).
        options: the options the server gets (sorted; paths absolute), including
            ``hostess_db`` and ``tags`` for its Hostess side.

    """

    enabled: bool
    name: str
    restart: str
    backoff_initial: float
    backoff_max: float
    options: tuple[tuple[str, Any], ...]

    def options_json(self) -> str:
        """Return the options as canonical JSON (the value of ``$PYKERNEL_DISCOVERY_OPTIONS``)."""
        return json.dumps(dict(self.options), sort_keys=True, ensure_ascii=True,
                          separators=(",", ":"), allow_nan=False)

    def server_spec(self, base_dir: str) -> ServerSpec:
        """Return the server this section expands into."""
        return ServerSpec(
            self.name, "python", DISCOVERY_ENTRY, (), base_dir,
            ((OPTIONS_ENV, self.options_json()),), self.restart, self.backoff_initial,
            self.backoff_max, (), DISCOVERY_MANIFEST, origin="discovery",
        )  # fmt: skip


def read_discovery(rd: Checks, value: Any, base_dir: str,
                   backoff: tuple[float, float]) -> DiscoverySpec | None:
    """Check the ``discovery:`` section; report every problem through ``rd``.

    Args:
        rd: the wiring reader (collects located diagnostics).
        value: the section as read (a mapping; null means an empty one).
        base_dir: the wiring file's directory (relative paths resolve against it).
        backoff: the file's default restart backoff.

    Returns:
        The section, or None when it is not a mapping at all.

    """
    where: Path = ("discovery",)
    if value is None:
        value = {}
    if isinstance(value, dict):
        for key in [k for k in value if isinstance(k, str) and k.lower() in _SECRETS]:
            rd.error((*where, key), "secret-in-wiring",
                     f"{key!r}: never write the passphrase into a wiring file; name a file "
                     "(passphrase_file) or an environment variable (passphrase_env)")
            value = {k: v for k, v in value.items() if k != key}
    data = rd.mapping(value, where, DISCOVERY_FIELDS)
    if not isinstance(value, dict):
        return None
    options: dict[str, Any] = {}
    for key, got in data.items():
        if key in DISCOVERY_FIELDS and key not in _SERVER_FIELDS:
            checked = _field(rd, key, got, (*where, key), base_dir)
            if checked is not None:
                options[key] = checked
    enabled = options.pop("enabled", True)
    name = data.get("name", DEFAULT_NAME)
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        rd.error((*where, "name"), "invalid-name",
                 f"server name {name!r} must match [A-Za-z][A-Za-z0-9_-]{{0,63}}")
        name = DEFAULT_NAME
    restart = DEFAULT_RESTART
    if "restart" in data:
        restart = rd.restart(data["restart"], (*where, "restart")) or restart
    if "backoff" in data:
        backoff = rd.backoff(data["backoff"], (*where, "backoff"), backoff) or backoff
    if enabled:
        _check_environment(rd, options, data)
    return DiscoverySpec(enabled, name, restart, backoff[0], backoff[1],
                         tuple(sorted(options.items())))


def _field(rd: Checks, key: str, value: Any, path: Path, base_dir: str) -> Any:
    """Check one field; return its option value, or None after reporting it."""
    if key in _BOOLEANS:
        if isinstance(value, bool):
            return value
        rd.error(path, "type", f"{key} must be true or false, got {type_name(value)} {value!r}")
    elif key in _NUMBERS or key in _INTEGERS:
        lo, hi = _NUMBERS.get(key) or _INTEGERS[key]
        kind = _NUMBER if key in _NUMBERS else int
        if isinstance(value, kind) and not isinstance(value, bool) and lo <= value <= hi:
            return value
        what = "a number of seconds" if key in _NUMBERS else "an integer"
        rd.error(path, "invalid-value", f"{key} {value!r} must be {what} in {lo:g}..{hi:g}")
    elif key in _CHOICES:
        if value in _CHOICES[key]:
            return value
        rd.error(path, "invalid-value", f"{key} {value!r} must be one of "
                 f"{', '.join(_CHOICES[key])}")
    elif key in _STRINGS or key == "passphrase_env":
        return _string(rd, key, value, path)
    elif key in _PATHS:
        if isinstance(value, str) and value:
            return os.path.normpath(os.path.join(base_dir, value))
        rd.error(path, "type", f"{key} must be a non-empty file name, got {type_name(value)}")
    else:
        return _names(rd, key, value, path)
    return None


def _string(rd: Checks, key: str, value: Any, path: Path) -> str | None:
    if not isinstance(value, str):
        rd.error(path, "type", f"{key} must be a string (quote it), got {type_name(value)}")
    elif key == "passphrase_env" and not _ENV_NAME.fullmatch(value):
        rd.error(path, "invalid-name", f"passphrase_env {value!r} is not an environment "
                 "variable name")
    elif key == "identity" and (not value or not value.isprintable()
                                or len(value.encode()) > MAX_IDENTITY):
        rd.error(path, "invalid-value",
                 f"identity {value!r} must be 1-{MAX_IDENTITY} bytes of printable text")
    else:
        if key == "identity":
            try:
                peer_identity(value)
            except IdentityError as exc:
                rd.error(path, "identity-not-hostess",
                         f"peers cannot register identity {value!r} in Hostess: {exc}",
                         severity="warning")
        return value
    return None


def _names(rd: Checks, key: str, value: Any, path: Path) -> list[str] | None:
    """Check ``interfaces``, ``transports`` or ``tags``: a list of names."""
    if not isinstance(value, list):
        rd.error(path, "type", f"{key} must be a list of names, got {type_name(value)}")
        return None
    ok = True
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item:
            rd.error((*path, i), "type", f"{key}[{i}] must be a non-empty string, "
                     f"got {type_name(item)} {item!r}")
            ok = False
        elif key == "transports" and not _TRANSPORT.fullmatch(item):
            rd.error((*path, i), "invalid-name",
                     f"{key}[{i}] {item!r} must match {_TRANSPORT.pattern}")
            ok = False
        elif key == "tags":
            try:
                check_tags([item])  # Hostess's own rule: the tags end up there
            except InputError as exc:
                rd.error((*path, i), "invalid-name", f"{key}[{i}] {exc.reason}")
                ok = False
    if key == "transports" and len(value) > 8:
        rd.error(path, "invalid-value", f"transports: {len(value)} given, at most 8")
        ok = False
    return list(value) if ok else None


def scapy_problem() -> str | None:
    """Return why scapy's LLDP support cannot be imported here, or None when it can.

    Only the module specs are looked up (cheap); nothing of scapy runs.
    """
    try:
        if importlib.util.find_spec("scapy") is None:
            return "scapy is not installed (install the discovery extra: pykernel[discovery])"
        if importlib.util.find_spec("scapy.contrib.lldp") is None:
            return "scapy has no scapy.contrib.lldp (scapy 2.6 or newer is needed)"
    except (ImportError, ValueError) as exc:
        return f"scapy cannot be imported: {type(exc).__name__}: {exc}"
    return None


def _check_environment(rd: Checks, options: dict[str, Any], data: dict[str, Any]) -> None:
    where: Path = ("discovery",)
    if not options.get("receive_only", False):
        problem = scapy_problem()
        if problem is not None:
            rd.error(where, "discovery-needs-scapy",
                     f"discovery is enabled but cannot send LLDP frames: {problem}")
    if not options.get("beacon", True):
        return
    if "passphrase_file" not in options:
        if "passphrase_file" not in data:  # (a bad one is reported already)
            env = options.get("passphrase_env", DEFAULT_PASSPHRASE_ENV)
            if not os.environ.get(env):
                rd.error(("discovery", "passphrase_env") if "passphrase_env" in data else where,
                         "passphrase-env-unset",
                         f"no passphrase_file, and ${env} is not set here: the discovery "
                         "server fails to start unless the kernel's environment sets it",
                         severity="warning")
        return
    path = (*where, "passphrase_file")
    file = options["passphrase_file"]
    if "passphrase_env" in data:
        rd.error((*where, "passphrase_env"), "conflicting-fields",
                 "passphrase_file is given, so passphrase_env is never read",
                 severity="warning")
    try:
        info = os.stat(file)
    except OSError as exc:
        rd.error(path, "passphrase-file", f"passphrase_file {data['passphrase_file']!r}: "
                 f"{exc.strerror} ({file})")
        return
    if not stat.S_ISREG(info.st_mode):
        rd.error(path, "passphrase-file",
                 f"passphrase_file {data['passphrase_file']!r} is not a regular file ({file})")
    elif not os.access(file, os.R_OK):
        rd.error(path, "passphrase-file",
                 f"passphrase_file {data['passphrase_file']!r} is not readable ({file})")
    elif info.st_size == 0:
        rd.error(path, "passphrase-file",
                 f"passphrase_file {data['passphrase_file']!r} is empty ({file})")
    elif info.st_mode & 0o004:
        rd.error(path, "passphrase-readable",
                 f"passphrase_file {data['passphrase_file']!r} is world-readable (mode "
                 f"{stat.S_IMODE(info.st_mode):04o}); chmod 600 it", severity="warning")
