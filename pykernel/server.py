"""The server runtime: what a service process uses to attach its terminals.

The kernel starts each server with its terminals in the environment:

- ``PYKERNEL_SYSTEM``, ``PYKERNEL_SERVER``, ``PYKERNEL_CONNECTOME``: who and where;
- ``PYKERNEL_TERMINALS``: JSON ``{terminal: {pipe, role, direction, message_size, dtype,
  shape}}`` (``role`` is ``writer`` or ``reader``; ``pipe`` null means unconnected);
- ``PYKERNEL_NOTIFY_FD``: where to say ``READY=1`` (see :mod:`pykernel._supervise`);
- ``PYKERNEL_RUN_DIR``: the system's run directory (logs, results);
- ``PYKERNEL_KERNEL_PID``: the kernel; :func:`run` asks Linux to SIGTERM the server when
  the kernel dies (``PR_SET_PDEATHSIG``), so a crashed kernel leaves no servers behind.

A Python server is a function taking a :class:`ServerContext`::

    def run(ctx):
        out = ctx.terminal("out")             # a pykernel.Writer
        for msg in ctx.messages("in"):        # ends once stopping and drained
            out.send(msg.upper())

and is launched with ``python -m pykernel.server package.module:run`` (what the kernel
does for ``kind: python`` servers) or :func:`run` from a script. :func:`run` attaches every
connected terminal first, which tells the kernel the server is ready, installs SIGTERM and
SIGINT handlers that set :attr:`ServerContext.stopping`, and detaches everything at the end.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from pykernel._errors import PykernelError
from pykernel._supervise import EX_CONFIG, NOTIFY_ENV, RUN_DIR_ENV, die_with_kernel

__all__ = [
    "ServerContext",
    "ServerError",
    "TerminalBinding",
    "main",
    "ready_when_told",
    "run",
]

ROLES = ("writer", "reader")
_BINDING_FIELDS = ("pipe", "role", "direction", "message_size", "dtype", "shape")


class ServerError(PykernelError):
    """The server runtime cannot set a server up (bad environment, unknown terminal).

    The process exits with :data:`~pykernel._supervise.EX_CONFIG` (78): a configuration
    error, which the executor does not retry.
    """

    exit_code = EX_CONFIG


@dataclass(frozen=True)
class TerminalBinding:
    """How one terminal of this server is bound to a pipe.

    Attributes:
        name: the terminal's name.
        pipe: the pipe's name (``/dev/shm/pykernel.<pipe>``), or None when unconnected.
        role: ``writer`` or ``reader``.
        direction: the manifest's direction (input, output, multiplexer, combiner).
        message_size: the largest message in bytes.
        dtype: numpy dtype of each message's array, or None.
        shape: array shape of each message, or None.

    """

    name: str
    pipe: str | None
    role: str
    direction: str
    message_size: int
    dtype: str | None = None
    shape: tuple[int, ...] | None = None

    @classmethod
    def from_json(cls, name: str, raw: object) -> TerminalBinding:
        """Build a binding from one entry of ``PYKERNEL_TERMINALS``.

        Raises:
            ServerError: naming the terminal and field that is wrong.

        """
        where = f"PYKERNEL_TERMINALS[{name!r}]"
        if not isinstance(raw, dict):
            raise ServerError(f"{where}: must be an object, got {type(raw).__name__}")
        unknown = sorted(set(raw) - set(_BINDING_FIELDS))
        if unknown:
            raise ServerError(f"{where}: unknown field {unknown[0]!r}")
        pipe = raw.get("pipe")
        if pipe is not None and (not isinstance(pipe, str) or not pipe):
            raise ServerError(f"{where}.pipe: must be a pipe name or null, got {pipe!r}")
        role = raw.get("role")
        if role not in ROLES:
            raise ServerError(f"{where}.role: must be writer or reader, got {role!r}")
        direction = raw.get("direction", "")
        if not isinstance(direction, str):
            raise ServerError(f"{where}.direction: must be a string, got {direction!r}")
        size = raw.get("message_size")
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ServerError(f"{where}.message_size: must be a positive integer, got {size!r}")
        dtype = raw.get("dtype")
        if dtype is not None and not isinstance(dtype, str):
            raise ServerError(f"{where}.dtype: must be a string or null, got {dtype!r}")
        shape = raw.get("shape")
        if shape is not None:
            if not isinstance(shape, list) or not all(
                isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape
            ):
                raise ServerError(f"{where}.shape: must be positive integers, got {shape!r}")
            shape = tuple(shape)
        return cls(name, pipe, role, direction, size, dtype, shape)

    def to_json(self) -> dict[str, Any]:
        """Return the ``PYKERNEL_TERMINALS`` entry for this binding (without the name)."""
        return {
            "pipe": self.pipe,
            "role": self.role,
            "direction": self.direction,
            "message_size": self.message_size,
            "dtype": self.dtype,
            "shape": list(self.shape) if self.shape is not None else None,
        }


def parse_terminals(text: str) -> dict[str, TerminalBinding]:
    """Parse the ``PYKERNEL_TERMINALS`` JSON.

    Raises:
        ServerError: bad JSON or a bad entry, naming where.

    """
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ServerError(
            f"PYKERNEL_TERMINALS: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    if not isinstance(raw, dict):
        raise ServerError(f"PYKERNEL_TERMINALS: must be a JSON object, got {type(raw).__name__}")
    return {name: TerminalBinding.from_json(name, entry) for name, entry in sorted(raw.items())}


class ServerContext:
    """One server's view of the system: its identity, terminals and stop flag.

    Args:
        system: the system's name.
        server: this server's name.
        terminals: the bindings by terminal name.
        connectome: the connectome id.
        notify_fd: where to write ``READY=1`` (None when not run by an executor).
        run_dir: the system's run directory, if any.

    Attributes:
        stopping: set when the kernel asks the server to stop (SIGTERM/SIGINT under
            :func:`run`). Long loops check it.

    """

    def __init__(
        self,
        system: str,
        server: str,
        terminals: Mapping[str, TerminalBinding],
        *,
        connectome: str = "",
        notify_fd: int | None = None,
        run_dir: str | None = None,
    ) -> None:
        self.system = system
        self.server = server
        self.connectome = connectome
        self.run_dir = run_dir
        self.terminals: dict[str, TerminalBinding] = dict(terminals)
        self.stopping = threading.Event()
        self._notify_fd = notify_fd
        self._ready_sent = False
        self.hold_ready = False
        """When set, attaching terminals does not report readiness: only :meth:`ready` does."""
        self._pipes: dict[str, Any] = {}
        self._ends: dict[str, Any] = {}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerContext:
        """Build the context from the environment the kernel set.

        Raises:
            ServerError: a variable is missing or malformed (named).

        """
        env = os.environ if environ is None else environ
        missing = [v for v in ("PYKERNEL_SYSTEM", "PYKERNEL_SERVER") if not env.get(v)]
        if missing:
            raise ServerError(f"{missing[0]} is not set: is this process run by `pykernel up`?")
        terminals = parse_terminals(env.get("PYKERNEL_TERMINALS", "{}"))
        notify: int | None = None
        if env.get(NOTIFY_ENV):
            try:
                notify = int(env[NOTIFY_ENV])
            except ValueError:
                raise ServerError(f"{NOTIFY_ENV}: not a file descriptor: {env[NOTIFY_ENV]!r}") \
                    from None
        return cls(
            env["PYKERNEL_SYSTEM"],
            env["PYKERNEL_SERVER"],
            terminals,
            connectome=env.get("PYKERNEL_CONNECTOME", ""),
            notify_fd=notify,
            run_dir=env.get(RUN_DIR_ENV) or None,
        )

    # ------------------------------------------------------------------ terminals
    def connected(self, name: str) -> bool:
        """Return True if terminal ``name`` is bound to a pipe."""
        binding = self.terminals.get(name)
        return binding is not None and binding.pipe is not None

    def terminal(self, name: str) -> Any:
        """Return the attached Writer or Reader of terminal ``name`` (attaching it once).

        Attaching the last connected terminal tells the kernel the server is ready.

        Raises:
            ServerError: no such terminal, or it is not connected.
            PipeError: the pipe cannot be opened or attached (from the pipe layer).

        """
        end = self._ends.get(name)
        if end is not None:
            return end
        binding = self.terminals.get(name)
        if binding is None:
            known = ", ".join(sorted(self.terminals)) or "none"
            raise ServerError(
                f"server {self.server!r} has no terminal {name!r} (terminals: {known})"
            )
        if binding.pipe is None:
            raise ServerError(f"server {self.server!r}: terminal {name!r} is not connected")
        from pykernel import Pipe  # the pipe core loads only for servers that use pipes

        pipe = Pipe.open(binding.pipe)
        try:
            end = pipe.writer() if binding.role == "writer" else pipe.reader()
        except BaseException:
            pipe.close()
            raise
        self._pipes[name] = pipe
        self._ends[name] = end
        if not self.hold_ready and all(
            n in self._ends for n, b in self.terminals.items() if b.pipe is not None
        ):
            self.ready()
        return end

    def attach_all(self) -> dict[str, Any]:
        """Attach every connected terminal (then report ready); return them by name."""
        for name, binding in self.terminals.items():
            if binding.pipe is not None:
                self.terminal(name)
        if not self.hold_ready:
            self.ready()
        return dict(self._ends)

    def messages(self, name: str, *, poll: float = 0.1, drain: float = 2.0,
                 on_idle: Callable[[], object] | None = None) -> Iterator[bytes]:
        """Yield messages from reader terminal ``name`` until stopping and drained.

        Once :attr:`stopping` is set, keeps reading what is already queued and ends at the
        first empty poll, or after ``drain`` seconds. A writer that died ends the
        iteration only when stopping (the kernel may restart it meanwhile).

        Args:
            name: a reader terminal.
            poll: seconds per wait, i.e. how soon a stop request is noticed.
            drain: most seconds spent draining after the stop request.
            on_idle: called after each wait that found nothing (periodic work while idle).

        """
        from pykernel import PipeTimeout, WriterGoneError

        reader = self.terminal(name)
        drain_until: float | None = None
        while True:
            if self.stopping.is_set() and drain_until is None:
                drain_until = time.monotonic() + drain
            if drain_until is not None and time.monotonic() > drain_until:
                return
            try:
                yield reader.recv(timeout=poll)
            except PipeTimeout:
                if self.stopping.is_set():
                    return
                if on_idle is not None:
                    on_idle()
            except WriterGoneError:
                if self.stopping.is_set():
                    return
                self.stopping.wait(poll)

    # ------------------------------------------------------------------ kernel link
    def ready(self) -> None:
        """Tell the kernel this server is ready (once; a no-op without a notify fd)."""
        if self._ready_sent:
            return
        self._ready_sent = True
        self._notify(b"READY=1\n")

    def status(self, text: str) -> None:
        """Send a one-line status text the kernel shows beside this server's state."""
        self._notify(b"STATUS=" + text.replace("\n", " ").encode()[:200] + b"\n")

    def _notify(self, line: bytes) -> None:
        if self._notify_fd is None:
            return
        try:
            os.write(self._notify_fd, line)
        except OSError:  # the kernel is gone or closed its end: nothing to tell
            self._notify_fd = None

    def close(self) -> None:
        """Detach every terminal and close its pipe (idempotent)."""
        ends, pipes = self._ends, self._pipes
        self._ends, self._pipes = {}, {}
        for end in ends.values():
            end.close()
        for pipe in pipes.values():
            pipe.close()

    def __enter__(self) -> ServerContext:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


ServerFunc = Callable[[ServerContext], Any]
_READY_WHEN_TOLD = "__pykernel_ready_when_told__"


def ready_when_told(func: ServerFunc) -> ServerFunc:
    """Mark a server function that reports readiness itself, with ``ctx.ready()``.

    :func:`run` still attaches every connected terminal first, but the kernel hears
    ``READY=1`` only when the function says so: a server that checks its configuration
    first (a passphrase, a device) and exits 78 (``EX_CONFIG``) when it is wrong then fails
    the boot instead of having been ready for a moment.
    """
    setattr(func, _READY_WHEN_TOLD, True)
    return func



def run(func: ServerFunc, ctx: ServerContext | None = None) -> int:
    """Run ``func(ctx)`` as this process's server; return the exit status.

    Attaches every connected terminal first (which reports readiness, unless ``func`` is
    marked :func:`ready_when_told`), sets
    ``ctx.stopping`` on SIGTERM/SIGINT, and closes everything afterwards. If ``func``
    carries a ``__pykernel_manifest__``, every terminal in the environment must be one it
    declares.

    Returns:
        ``func``'s integer result, or 0.

    Raises:
        ServerError: a bad environment, or terminals the manifest does not declare.

    """
    ctx = ctx if ctx is not None else ServerContext.from_env()
    declared = getattr(getattr(func, "__pykernel_manifest__", None), "terminals", None)
    if declared is not None:
        names = {t.name for t in declared}
        extra = sorted(set(ctx.terminals) - names)
        if extra:
            raise ServerError(
                f"server {ctx.server!r}: terminal {extra[0]!r} is not in the manifest of "
                f"{getattr(func, '__qualname__', func)!r}"
            )

    def on_signal(signum: int, frame: object) -> None:
        ctx.stopping.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        die_with_kernel()  # a SIGKILLed kernel must not leave its servers running
    ctx.hold_ready = bool(getattr(func, _READY_WHEN_TOLD, False))
    with ctx:
        ctx.attach_all()
        result = func(ctx)
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def load_entry(entry: str) -> ServerFunc:
    """Import ``module:callable`` (dots allowed in both parts).

    Raises:
        ServerError: malformed entry, module not importable, or attribute missing.

    """
    module_name, sep, attr = entry.partition(":")
    if not sep or not module_name or not attr:
        raise ServerError(f"entry {entry!r}: expected 'module:callable'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ServerError(f"entry {entry!r}: cannot import {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ServerError(f"entry {entry!r}: {module_name!r} has no {attr!r}") from None
    if not callable(obj):
        raise ServerError(f"entry {entry!r}: {attr!r} is not callable")
    return obj


def main(argv: list[str] | None = None) -> int:
    """``python -m pykernel.server module:callable``: run a Python server by entry."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m pykernel.server module:callable", file=sys.stderr)
        return 2
    try:
        return run(load_entry(args[0]))
    except PykernelError as exc:
        print(f"pykernel.server: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception:
        # The log file is the place for the whole story.
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
