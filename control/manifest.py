"""Manifests: a server's identity and terminals, fixed before anything starts.

A Python server declares its manifest in code::

    from control.manifest import manifest, terminal

    @manifest(servername="source", class_hex="0x10", owner="demo",
              terminals=[terminal("frames", "multiplexer", message_size=4096,
                                  dtype="float32", shape=(1024,))])
    def run(ctx): ...

An external program declares the same fields in YAML (inline in the wiring file or in a
manifest file). Both go through :func:`check_manifest`, so they are validated alike.

Rules (each violation names its field):

- ``servername``: ``[A-Za-z][A-Za-z0-9_-]{0,63}`` (it is part of the Hostess identity,
  whose separator is ``:``).
- ``class_hex``: ``0x`` followed by 1-16 hex digits (at most 64 bits).
- ``owner``: ``[A-Za-z0-9_.@-]{1,64}``.
- ``auth_flag``: the integer 0 or 1; ``auth_mechanism``: one of :data:`AUTH_MECHANISMS`;
  ``none`` exactly when ``auth_flag`` is 0.
- ``terminals``: a non-empty list; names ``[A-Za-z_][A-Za-z0-9_]{0,63}``, unique; direction
  one of :data:`DIRECTIONS`; ``message_size`` 1..2**30 bytes; ``dtype`` a numpy dtype and
  ``shape`` positive integers (given together), whose byte size fits in ``message_size``.
  ``required`` defaults to true for ``input``/``combiner`` and false for
  ``output``/``multiplexer``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from control.errors import ManifestError

DIRECTIONS = ("input", "output", "multiplexer", "combiner")
"""Terminal directions: ``multiplexer`` fans one output out, ``combiner`` fans many in."""
WRITING_DIRECTIONS = frozenset({"output", "multiplexer"})
"""Directions whose terminal writes into a pipe (a connection's source side)."""
READING_DIRECTIONS = frozenset({"input", "combiner"})
"""Directions whose terminal reads from a pipe (a connection's target side)."""
AUTH_MECHANISMS = ("none", "passphrase", "token", "mtls")
"""Accepted ``auth_mechanism`` values."""
MAX_MESSAGE_SIZE = 1 << 30
"""Largest message a terminal may declare (1 GiB)."""

MANIFEST_FIELDS = ("servername", "class_hex", "owner", "auth_flag", "auth_mechanism", "terminals")
"""Every field a manifest mapping may hold."""
TERMINAL_FIELDS = ("name", "direction", "message_size", "dtype", "shape", "required")
"""Every field a terminal mapping may hold."""

SERVERNAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
CLASS_HEX_RE = re.compile(r"0x[0-9A-Fa-f]{1,16}")
OWNER_RE = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
TERMINAL_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

Path = tuple[str | int, ...]
"""A field path inside a document: mapping keys and list indices."""

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a manifest (or any document), located by field path.

    Attributes:
        path: field path relative to the document checked, e.g. ``("terminals", 0, "name")``.
        code: short kebab-case code, e.g. ``identity`` or ``type``.
        message: what is wrong, naming the offending value.

    """

    path: Path
    code: str
    message: str


@dataclass(frozen=True)
class TerminalSpec:
    """One terminal of a server.

    Attributes:
        name: terminal name, unique within the manifest.
        direction: ``input``, ``output``, ``multiplexer`` or ``combiner``.
        message_size: largest message in bytes.
        dtype: numpy dtype string of each message's array, or None for raw bytes.
        shape: array shape of each message, or None.
        required: whether lint insists the terminal is connected.

    """

    name: str
    direction: str
    message_size: int
    dtype: str | None = None
    shape: tuple[int, ...] | None = None
    required: bool = False

    @property
    def writes(self) -> bool:
        """True for ``output``/``multiplexer`` terminals (they write into a pipe)."""
        return self.direction in WRITING_DIRECTIONS

    def to_dict(self) -> dict[str, Any]:
        """Return the plain-JSON form (shape as a list)."""
        return {
            "name": self.name,
            "direction": self.direction,
            "message_size": self.message_size,
            "dtype": self.dtype,
            "shape": list(self.shape) if self.shape is not None else None,
            "required": self.required,
        }


@dataclass(frozen=True)
class Manifest:
    """A server's declared identity and terminals.

    Attributes:
        servername: the server's identity name (not the instance name in a wiring file).
        class_hex: class as ``0x``-prefixed hex, at most 64 bits.
        owner: who owns the server.
        auth_flag: 1 if peers must authenticate, else 0.
        auth_mechanism: one of :data:`AUTH_MECHANISMS`.
        terminals: the terminals, in declaration order.

    """

    servername: str
    class_hex: str
    owner: str
    auth_flag: int = 0
    auth_mechanism: str = "none"
    terminals: tuple[TerminalSpec, ...] = field(default_factory=tuple)

    def terminal(self, name: str) -> TerminalSpec | None:
        """Return the terminal called ``name``, or None."""
        for spec in self.terminals:
            if spec.name == name:
                return spec
        return None

    def identity(self, fqdn: str, uuid: str) -> str:
        """Return the Hostess identity string.

        The form is ``fqdn:servername:classHex:owner:authFlag:authMechanism:uuid``.
        """
        return ":".join(
            (fqdn, self.servername, self.class_hex, self.owner, str(self.auth_flag),
             self.auth_mechanism, uuid)
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the plain-JSON form, accepted back by :func:`check_manifest`."""
        return {
            "servername": self.servername,
            "class_hex": self.class_hex,
            "owner": self.owner,
            "auth_flag": self.auth_flag,
            "auth_mechanism": self.auth_mechanism,
            "terminals": [t.to_dict() for t in self.terminals],
        }

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        """Validate a mapping and build the manifest.

        Raises:
            ManifestError: on the first problem, naming its field.

        """
        return _raise_first(check_manifest(data))


def type_name(value: Any) -> str:
    """Name a YAML/JSON value's type the way a user writes it (``mapping``, ``list``...)."""
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "list",
            tuple: "list", dict: "mapping"}.get(type(value), type(value).__name__)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _open_mapping(data: Any, what: str, allowed: Sequence[str],
                  where: Path) -> tuple[bool, list[Problem]]:
    if not isinstance(data, Mapping):
        return False, [Problem(where, "type",
                               f"a {what} must be a mapping, got {type_name(data)}")]
    return True, _unknown_fields(data, allowed, where)


def _unknown_fields(data: Mapping[Any, Any], allowed: Sequence[str], where: Path) -> list[Problem]:
    return [
        Problem((*where, str(key)), "unknown-field",
                f"unknown field {key!r} (allowed: {', '.join(allowed)})")
        for key in data
        if key not in allowed
    ]


def _check_str(data: Mapping[str, Any], key: str, rx: re.Pattern[str], rule: str,
               where: Path, problems: list[Problem]) -> str | None:
    if key not in data:
        problems.append(Problem(where, "missing-field", f"missing required field {key!r}"))
        return None
    value = data[key]
    if not isinstance(value, str):
        problems.append(Problem((*where, key), "identity",
                                f"{key} must be a string, got {type_name(value)} {value!r}"))
        return None
    if not rx.fullmatch(value):
        problems.append(Problem((*where, key), "identity", f"{key} {value!r} must match {rule}"))
        return None
    return value


def check_terminal(data: Any, where: Path = ()) -> tuple[TerminalSpec | None, list[Problem]]:
    """Validate one terminal mapping.

    Args:
        data: the mapping (from YAML, or built by :func:`terminal`).
        where: path of the mapping inside its document, prefixed to every problem.

    Returns:
        The terminal (None if invalid) and every problem found.

    """
    is_mapping, problems = _open_mapping(data, "terminal", TERMINAL_FIELDS, where)
    if not is_mapping:
        return None, problems
    name = data.get("name")
    if "name" not in data:
        problems.append(Problem(where, "missing-field", "missing required field 'name'"))
    elif not isinstance(name, str) or not TERMINAL_NAME_RE.fullmatch(name):
        problems.append(Problem((*where, "name"), "invalid-name",
                                f"terminal name {name!r} must match [A-Za-z_][A-Za-z0-9_]{{0,63}}"))
    direction = data.get("direction")
    if "direction" not in data:
        problems.append(Problem(where, "missing-field", "missing required field 'direction'"))
    elif direction not in DIRECTIONS:
        problems.append(Problem((*where, "direction"), "invalid-direction",
                                f"direction {direction!r} must be one of {', '.join(DIRECTIONS)}"))
    size = data.get("message_size")
    if "message_size" not in data:
        problems.append(Problem(where, "missing-field", "missing required field 'message_size'"))
    elif not _is_int(size) or not 1 <= size <= MAX_MESSAGE_SIZE:
        problems.append(Problem((*where, "message_size"), "invalid-size",
                                f"message_size {size!r} must be an integer 1..{MAX_MESSAGE_SIZE}"))
    dtype, shape = _check_array(data, where, problems, size if _is_int(size) else None)
    required = data.get("required")
    if required is not None and not isinstance(required, bool):
        problems.append(Problem((*where, "required"), "type",
                                f"required must be true or false, got {required!r}"))
    if problems:
        return None, problems
    if required is None:
        required = direction in READING_DIRECTIONS
    return TerminalSpec(name, direction, size, dtype, shape, bool(required)), []


def _check_array(data: Mapping[str, Any], where: Path, problems: list[Problem],
                 size: int | None) -> tuple[str | None, tuple[int, ...] | None]:
    dtype_raw, shape_raw = data.get("dtype"), data.get("shape")
    dtype: str | None = None
    shape: tuple[int, ...] | None = None
    itemsize = 0
    if dtype_raw is not None:
        import numpy as np  # deferred: manifests without arrays never pay for numpy

        try:
            if not isinstance(dtype_raw, str):
                raise TypeError(dtype_raw)
            itemsize = np.dtype(dtype_raw).itemsize
            dtype = dtype_raw  # kept as written; compare with np.dtype() equality
        except (TypeError, ValueError, SyntaxError):
            problems.append(Problem((*where, "dtype"), "invalid-dtype",
                                    f"dtype {dtype_raw!r} is not a numpy dtype"))
    if shape_raw is not None:
        if (isinstance(shape_raw, list | tuple) and shape_raw
                and all(_is_int(d) and d > 0 for d in shape_raw)):
            shape = tuple(shape_raw)
        else:
            problems.append(Problem((*where, "shape"), "invalid-shape",
                                    f"shape {shape_raw!r} must be a non-empty list of "
                                    "positive integers"))
    if (dtype_raw is None) != (shape_raw is None):
        given = "dtype" if dtype_raw is not None else "shape"
        problems.append(Problem((*where, given), "invalid-shape",
                                "dtype and shape must be given together"))
    elif dtype is not None and shape is not None and size is not None:
        nbytes = itemsize * math.prod(shape)
        if nbytes > size:
            problems.append(Problem((*where, "message_size"), "invalid-size",
                                    f"message_size {size} is smaller than the array "
                                    f"({dtype} {list(shape)} = {nbytes} bytes)"))
    return dtype, shape


def check_manifest(data: Any, where: Path = ()) -> tuple[Manifest | None, list[Problem]]:
    """Validate a manifest mapping: the one rule set for code and YAML manifests.

    Args:
        data: mapping with :data:`MANIFEST_FIELDS`; ``terminals`` items are mappings or
            :class:`TerminalSpec` records.
        where: path of the mapping inside its document, prefixed to every problem.

    Returns:
        The manifest (None if invalid) and every problem found.

    """
    is_mapping, problems = _open_mapping(data, "manifest", MANIFEST_FIELDS, where)
    if not is_mapping:
        return None, problems
    servername = _check_str(data, "servername", SERVERNAME_RE,
                            "[A-Za-z][A-Za-z0-9_-]{0,63}", where, problems)
    class_hex = _check_str(data, "class_hex", CLASS_HEX_RE,
                           "0x and 1-16 hex digits (at most 64 bits)", where, problems)
    owner = _check_str(data, "owner", OWNER_RE, "[A-Za-z0-9_.@-]{1,64}", where, problems)
    auth_flag = data.get("auth_flag", 0)
    if not _is_int(auth_flag) or auth_flag not in (0, 1):
        problems.append(Problem((*where, "auth_flag"), "identity",
                                f"auth_flag must be 0 or 1, got {auth_flag!r}"))
        auth_flag = None
    mechanism = data.get("auth_mechanism", "none")
    if mechanism not in AUTH_MECHANISMS:
        problems.append(Problem((*where, "auth_mechanism"), "identity",
                                f"auth_mechanism {mechanism!r} must be one of "
                                f"{', '.join(AUTH_MECHANISMS)}"))
    elif auth_flag is not None and (auth_flag == 0) != (mechanism == "none"):
        # Point at the field the user wrote: the mechanism, or the flag if it stands alone.
        culprit = "auth_mechanism" if "auth_mechanism" in data else "auth_flag"
        problems.append(Problem((*where, culprit), "identity",
                                f"auth_mechanism {mechanism!r} contradicts auth_flag {auth_flag}: "
                                "use 'none' exactly when auth_flag is 0"))
    terminals = _check_terminals(data, where, problems)
    if problems:
        return None, problems
    assert servername and class_hex and owner and auth_flag is not None
    return Manifest(servername, class_hex.lower(), owner, auth_flag, mechanism, terminals), []


def _check_terminals(data: Mapping[str, Any], where: Path,
                     problems: list[Problem]) -> tuple[TerminalSpec, ...]:
    raw = data.get("terminals")
    if "terminals" not in data:
        problems.append(Problem(where, "missing-field", "missing required field 'terminals'"))
        return ()
    if not isinstance(raw, list | tuple) or not raw:
        problems.append(Problem((*where, "terminals"), "type",
                                f"terminals must be a non-empty list, got {type_name(raw)}"))
        return ()
    specs: list[TerminalSpec] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        here = (*where, "terminals", i)
        if isinstance(item, TerminalSpec):
            item = item.to_dict()
        spec, found = check_terminal(item, here)
        problems.extend(found)
        if spec is None:
            continue
        if spec.name in seen:
            problems.append(Problem((*here, "name"), "duplicate-name",
                                    f"terminal {spec.name!r} is declared twice "
                                    f"(first at terminals[{seen[spec.name]}])"))
            continue
        seen[spec.name] = i
        specs.append(spec)
    return tuple(specs)


def _raise_first(result: tuple[Manifest | None, list[Problem]]) -> Manifest:
    built, problems = result
    if built is None:
        first = problems[0]
        field_name = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first.path)
        raise ManifestError(first.message, field_name.lstrip("."))
    return built


def terminal(name: str, direction: str, *, message_size: int, dtype: str | None = None,
             shape: Iterable[int] | None = None, required: bool | None = None) -> TerminalSpec:
    """Declare one terminal for :func:`manifest`.

    Args:
        name: terminal name.
        direction: ``input``, ``output``, ``multiplexer`` or ``combiner``.
        message_size: largest message in bytes.
        dtype: numpy dtype of each message's array (with ``shape``).
        shape: array shape of each message (with ``dtype``).
        required: whether it must be connected; default true for inputs/combiners.

    Raises:
        ManifestError: if any field is invalid.

    """
    data: dict[str, Any] = {"name": name, "direction": direction, "message_size": message_size}
    if dtype is not None:
        data["dtype"] = dtype
    if shape is not None:
        data["shape"] = list(shape) if isinstance(shape, Iterable) else shape
    if required is not None:
        data["required"] = required
    spec, problems = check_terminal(data)
    if spec is None:
        first = problems[0]
        raise ManifestError(first.message, ".".join(str(p) for p in first.path))
    return spec


def manifest(*, servername: str, class_hex: str, owner: str, auth_flag: int = 0,
             auth_mechanism: str = "none",
             terminals: Sequence[TerminalSpec | Mapping[str, Any]]) -> Callable[[F], F]:
    """Attach a validated :class:`Manifest` to a server function as ``__pykernel_manifest__``.

    Raises:
        ManifestError: at decoration (import) time, naming the first invalid field.

    """
    built = _raise_first(check_manifest({
        "servername": servername, "class_hex": class_hex, "owner": owner,
        "auth_flag": auth_flag, "auth_mechanism": auth_mechanism, "terminals": list(terminals),
    }))

    def attach(func: F) -> F:
        func.__pykernel_manifest__ = built  # type: ignore[attr-defined]
        return func

    return attach


def manifest_of(obj: Any) -> Manifest | None:
    """Return the manifest attached to ``obj`` by :func:`manifest`, or None."""
    found = getattr(obj, "__pykernel_manifest__", None)
    return found if isinstance(found, Manifest) else None
