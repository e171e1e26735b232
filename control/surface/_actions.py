"""What the control surface asks of the kernel: the narrow :class:`KernelActions` protocol."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class KernelActions(Protocol):
    """The modify operations the kernel carries out for the control surface.

    The surface has already checked the request against the state (the lint rules) and holds
    its modify lock, so calls never overlap. Each method either does all of its work or
    raises a :class:`pykernel.PykernelError` having changed nothing; the surface answers 409
    with that error's message.

    The kernel reports server moves (``starting`` → ``ready`` → ``running``, ``stopped``...)
    to the :class:`control.state.SystemState` itself as they happen; the surface records
    connections (from the records :meth:`connect` returns) and closes them after
    :meth:`disconnect`.
    """

    def connect(self, source: str, target: str) -> tuple[Any, Any]:
        """Create (or extend) the pipe for ``source -> target`` and attach both ends.

        Args:
            source: ``server.terminal`` that writes.
            target: ``server.terminal`` that reads.

        Returns:
            ``(PlannedConnection, PlannedPipe)`` as :mod:`control.plan` defines them; the pipe
            is the existing one when a multiplexer or combiner pipe is extended.

        """
        ...

    def disconnect(self, connection_id: str) -> None:
        """Detach the connection's ends; remove its pipe when no connection uses it."""
        ...

    def start_server(self, name: str) -> None:
        """Start a ``declared``, ``stopped`` or ``failed`` server."""
        ...

    def stop_server(self, name: str) -> None:
        """Stop a server (SIGTERM, grace period, SIGKILL) without restarting it."""
        ...

    def restart_server(self, name: str) -> None:
        """Stop a server if it runs, then start it."""
        ...
