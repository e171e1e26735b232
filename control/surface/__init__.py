"""The control surface: the kernel's query/modify HTTP API, its live HMI page and diagrams.

::

    surface = Surface(state, actions, run_dir=run_dir)   # 127.0.0.1, a free port
    surface.mount("/api/hostess/", hostess_api.mount(hostess, surface.authorize),
                  hostess_api.OPENAPI_PATHS)             # optional: Hostess's routes
    surface.start()
    print(surface.url, surface.token_file)               # token stored 0600
    ...
    surface.stop()

Queries need nothing; modifies (connect, disconnect, start/stop/restart a server) need
``Authorization: Bearer <token>`` with the token from ``<run_dir>/surface.token``. The routes
are listed in :data:`ROUTES` and described at ``/openapi.json``.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from control.state import SystemState
from control.surface._actions import KernelActions
from control.surface._api import ROUTES, Api, Request, Response, Route
from control.surface._auth import INFO_FILE, TOKEN_FILE, create_token, token_matches, write_info
from control.surface._errors import (
    BadRequest,
    Conflict,
    NotFound,
    Refused,
    SurfaceError,
    Unauthorized,
)
from control.surface._http import make_server

__all__ = [
    "INFO_FILE", "ROUTES", "TOKEN_FILE", "Api", "BadRequest", "Conflict", "KernelActions",
    "NotFound", "Refused", "Request", "Response", "Route", "Surface", "SurfaceError",
    "Unauthorized",
]


class Surface:
    """The control surface of one kernel: an HTTP server on its own threads.

    Args:
        state: the live state machine it serves.
        actions: carries out modifies (the kernel); None makes it read-only.
        run_dir: where the token (``surface.token``, 0600) and ``surface.json`` (url, pid)
            go; None keeps the token in memory only.
        host: address to bind; 127.0.0.1 by default (a non-loopback address exposes the API
            to the network: queries need no token).
        port: port to bind; 0 picks a free one.
        export: returns the running system as wiring-file YAML (for ``/api/export``).
        mounts: extra handlers by path prefix, e.g. ``{"/api/hostess/": hostess_handler}``.

    """

    def __init__(self, state: SystemState, actions: KernelActions | None = None, *,
                 run_dir: Path | None = None, host: str = "127.0.0.1", port: int = 0,
                 export: Callable[[], str] | None = None,
                 mounts: Mapping[str, Callable[[Request], Response]] | None = None) -> None:
        self.state = state
        self.run_dir = run_dir
        if run_dir is not None:
            self.token, path = create_token(run_dir)
            self.token_file: Path | None = path
        else:
            from secrets import token_urlsafe

            self.token, self.token_file = token_urlsafe(32), None
        self.api = Api(state, actions, self.token, export=export, mounts=mounts)
        try:
            self._server = make_server(self.api, host, port)
        except OSError as exc:  # in use, not an address of this host, no permission
            raise SurfaceError(f"control surface cannot listen on {host}:{port}: "
                               f"{exc.strerror or exc}", "port", 0) from None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)``."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:41234``."""
        host, port = self.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def authorize(self, request: Request) -> bool:
        """Return whether ``request`` carries this surface's bearer token (for mounts)."""
        return token_matches(request.headers.get("authorization"), self.token)

    def mount(self, prefix: str, handler: Callable[[Request], Response],
              openapi_paths: Mapping[str, Any] | None = None) -> None:
        """Serve every path under ``prefix`` with ``handler`` (e.g. Hostess's routes).

        Args:
            prefix: path prefix, e.g. ``/api/hostess/``.
            handler: answers a request; it checks authorization itself (see :meth:`authorize`).
            openapi_paths: its OpenAPI ``paths`` entries, merged into ``/openapi.json``.

        """
        self.api.mounts[prefix] = handler
        self.api.openapi_extra.update(openapi_paths or {})

    def start(self) -> Surface:
        """Serve on a daemon thread; write ``surface.json`` to the run directory."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever,
                                            kwargs={"poll_interval": 0.2},
                                            name="pykernel-surface", daemon=True)
            self._thread.start()
            if self.run_dir is not None:
                write_info(self.run_dir, {"url": self.url, "pid": os.getpid(),
                                          "system": self.state.system,
                                          "token_file": TOKEN_FILE})
        return self

    def stop(self) -> None:
        """Stop serving, end open event streams, and remove ``surface.json`` and the token."""
        self._server.stopping.set()
        self.state.tick()  # wakes the event streams so they see ``stopping``
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()
        if self.run_dir is not None:
            for name in (INFO_FILE, TOKEN_FILE):
                with contextlib.suppress(FileNotFoundError):
                    (self.run_dir / name).unlink()

    def __enter__(self) -> Surface:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
