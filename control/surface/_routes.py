"""The control surface's route table: data that both the API and its OpenAPI document read.

Its own module so that :mod:`control.surface._api` (which answers the routes) and
:mod:`control.surface._openapi` (which describes them) both import it and not each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Route:
    """One route of the API.

    Attributes:
        method: HTTP method.
        pattern: path with ``{name}`` parameters.
        handler: name of the :class:`Api` method that answers it.
        summary: one line for the OpenAPI document.
        modify: whether it changes the system (needs the bearer token).
        body: JSON body fields ``{name: type}`` (modify routes), all required.
        query: query parameters ``{name: description}``.
        media: the response media type.

    """

    method: str
    pattern: str
    handler: str
    summary: str
    modify: bool = False
    body: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    media: str = "application/json"


ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/system", "get_system", "Kernel state, counts by state, connectome ID"),
    Route("GET", "/api/lifecycles", "get_lifecycles", "States and legal transitions (data)"),
    Route("GET", "/api/servers", "get_servers", "Every server with state, pid, manifest"),
    Route("GET", "/api/servers/{name}", "get_server", "One server with its terminals"),
    Route("GET", "/api/terminals", "get_terminals", "Every terminal: direction, pipe, role"),
    Route("GET", "/api/connections", "get_connections", "Every connection with live flow"),
    Route("GET", "/api/connections/{id}", "get_connection", "One connection"),
    Route("GET", "/api/pipes", "get_pipes", "Every pipe: geometry and raw statistics"),
    Route("GET", "/api/events", "get_events", "The event log (transitions with time, cause)",
          query={"since": "only events with seq > since (default 0)",
                 "limit": "at most this many (default 1000, max 10000)"}),
    Route("GET", "/api/connectome", "get_connectome", "The connectome with its ID and version"),
    Route("GET", "/api/graph", "get_graph", "The diagram (dot, mermaid or svg)",
          query={"format": "dot (default), mermaid or svg"}, media="text/plain"),
    Route("GET", "/api/export", "get_export", "The running system as a wiring file (YAML)",
          media="application/yaml"),
    Route("GET", "/api/stream", "get_stream", "Live updates (Server-Sent Events, `status`)",
          media="text/event-stream"),
    Route("GET", "/metrics", "get_metrics", "Prometheus metrics of pipes and servers",
          media="text/plain; version=0.0.4"),
    Route("GET", "/openapi.json", "get_openapi", "This document"),
    Route("POST", "/api/connections", "post_connection", "Connect two terminals at run time",
          modify=True, body={"source": "string", "target": "string"}),
    Route("DELETE", "/api/connections/{id}", "delete_connection", "Disconnect a connection",
          modify=True),
    Route("POST", "/api/servers/{name}/start", "post_start", "Start a server", modify=True),
    Route("POST", "/api/servers/{name}/stop", "post_stop", "Stop a server", modify=True),
    Route("POST", "/api/servers/{name}/restart", "post_restart", "Restart a server",
          modify=True),
)
