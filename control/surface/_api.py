"""The control surface's routes, independent of the HTTP server that carries them.

:class:`Api` turns a :class:`Request` into a :class:`Response`. Routes are data
(:data:`~control.surface._routes.ROUTES`): the OpenAPI document is generated from the same
table, so it cannot drift.
Every refusal is a :class:`~control.surface._errors.SurfaceError` answered as JSON
``{"error": {"status", "message", "field"}}``; a refused modify changes nothing.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from control import graph
from control.state import SystemState
from control.state_export import current_plan, export_yaml
from control.state_model import LIFECYCLES, SERVER_UP, UnknownSubject
from control.surface import _metrics
from control.surface._actions import KernelActions
from control.surface._auth import token_matches
from control.surface._checks import check_connect, check_disconnect_allowed
from control.surface._errors import BadRequest, Conflict, NotFound, SurfaceError, Unauthorized
from control.surface._openapi import document
from control.surface._routes import ROUTES, Route
from pykernel import PykernelError

# Route and ROUTES live in _routes (so _openapi need not import this module); kept here too.
__all__ = ["MAX_BODY", "ROUTES", "Api", "Request", "Response", "Route"]

MAX_BODY = 64 * 1024
"""Largest request body accepted (bytes)."""


@dataclass(frozen=True)
class Request:
    """One HTTP request, already read.

    Attributes:
        method: ``GET``, ``POST``, ``DELETE``...
        path: the path without the query string.
        query: query parameters (last value wins).
        headers: header names in lower case.
        body: the raw body.

    """

    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class Response:
    """One HTTP response.

    Attributes:
        status: HTTP status code.
        body: the encoded body.
        content_type: its media type.

    """

    status: int
    body: bytes
    content_type: str = "application/json"

    @classmethod
    def json(cls, data: Any, status: int = 200) -> Response:
        """Return a JSON response (sorted keys, so answers are stable)."""
        return cls(status, json.dumps(data, sort_keys=True).encode())

    @classmethod
    def error(cls, exc: SurfaceError) -> Response:
        """Return the JSON error response for a refusal."""
        return cls.json(exc.to_json(), exc.status)


def _match(pattern: str, path: str) -> dict[str, str] | None:
    want, got = pattern.split("/"), path.rstrip("/").split("/") if path != "/" else [""]
    if len(want) != len(got):
        return None
    params: dict[str, str] = {}
    for w, g in zip(want, got, strict=True):
        if w.startswith("{"):
            if not g:
                return None
            params[w[1:-1]] = g
        elif w != g:
            return None
    return params


def _int_param(query: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name}={raw!r} must be an integer", name) from None
    if not lo <= value <= hi:
        raise BadRequest(f"query parameter {name}={value} must be in {lo}..{hi}", name)
    return value


class Api:
    """Answers the control surface's routes for one system.

    Args:
        state: the live state machine.
        actions: what carries out modifies (the kernel); None makes the surface read-only
            (modify routes answer 409).
        token: the bearer token modify routes require.
        export: returns the running system as wiring-file YAML (default
            :func:`control.state_export.export_yaml`).
        mounts: extra handlers by path prefix (e.g. ``/api/hostess/``), given the request.

    """

    def __init__(self, state: SystemState, actions: KernelActions | None, token: str,
                 export: Callable[[], str] | None = None,
                 mounts: Mapping[str, Callable[[Request], Response]] | None = None) -> None:
        self.state = state
        self.actions = actions
        self.token = token
        self.export = export if export is not None else (lambda: export_yaml(state))
        self.mounts = dict(mounts or {})
        self.openapi_extra: dict[str, Any] = {}
        self._modify_lock = threading.Lock()

    # ------------------------------------------------------------ dispatch

    def route(self, req: Request) -> tuple[Route, dict[str, str]]:
        """Find the route for a request.

        Raises:
            NotFound: no route has this path.
            SurfaceError: the path exists but not with this method (405).

        """
        allowed = []
        for r in ROUTES:
            params = _match(r.pattern, req.path)
            if params is not None:
                if r.method == req.method:
                    return r, params
                allowed.append(r.method)
        if allowed:
            raise SurfaceError(f"{req.method} not allowed on {req.path} "
                               f"(allowed: {', '.join(sorted(allowed))})", "method", 405)
        raise NotFound(f"no route {req.path}", "path")

    def handle(self, req: Request) -> Response:
        """Answer one request; refusals become JSON errors, never exceptions."""
        try:
            for prefix, mount in self.mounts.items():
                if req.path.startswith(prefix):
                    return mount(req)
            route, params = self.route(req)
            if route.modify:
                if not token_matches(req.headers.get("authorization"), self.token):
                    raise Unauthorized("modify needs 'Authorization: Bearer <token>' with the "
                                       "token from the run directory", "authorization")
                body = self._body(req, route)
                with self._modify_lock:
                    return getattr(self, route.handler)(params, body)
            if req.body:
                raise BadRequest(f"{req.method} {route.pattern} takes no body", "body")
            return getattr(self, route.handler)(params, req.query)
        except SurfaceError as exc:
            return Response.error(exc)
        except Exception as exc:  # a bug answers 500 JSON, never a dropped connection
            return Response.error(SurfaceError(
                f"internal error: {type(exc).__name__}: {exc}", "", 500))

    def _body(self, req: Request, route: Route) -> dict[str, Any]:
        if not route.body:
            if req.body.strip() not in (b"", b"{}"):
                raise BadRequest(f"{req.method} {route.pattern} takes no body", "body")
            return {}
        if len(req.body) > MAX_BODY:
            raise SurfaceError(f"body larger than {MAX_BODY} bytes", "body", 413)
        ctype = req.headers.get("content-type", "application/json").split(";")[0].strip()
        if ctype != "application/json":
            raise SurfaceError(f"content-type {ctype!r}: send application/json", "body", 415)
        try:
            data = json.loads(req.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"body is not valid JSON: {exc}", "body") from None
        if not isinstance(data, dict):
            raise BadRequest(f"body must be a JSON object, got {type(data).__name__}", "body")
        for key in data:
            if key not in route.body:
                raise BadRequest(f"unknown field {key!r} (allowed: {', '.join(route.body)})",
                                 str(key))
        for key, kind in route.body.items():
            if key not in data:
                raise BadRequest(f"missing field {key!r}", key)
            if kind == "string" and not isinstance(data[key], str):
                raise BadRequest(f"field {key!r} must be a string, got "
                                 f"{type(data[key]).__name__}", key)
        return data

    # ------------------------------------------------------------ queries

    def get_system(self, params: dict[str, str], query: Mapping[str, str]) -> Response:
        """GET /api/system."""
        return Response.json(self.state.system_json())

    def get_lifecycles(self, params: dict[str, str], query: Mapping[str, str]) -> Response:
        """GET /api/lifecycles."""
        return Response.json({k: lc.to_json() for k, lc in LIFECYCLES.items()})

    def get_servers(self, params: dict[str, str], query: Mapping[str, str]) -> Response:
        """GET /api/servers."""
        return Response.json(self.state.servers_json())

    def get_server(self, params: dict[str, str], query: Mapping[str, str]) -> Response:
        """GET /api/servers/{name}."""
        return Response.json(self._lookup(self.state.server_json, params["name"], "name"))

    def get_terminals(self, params: dict[str, str], query: Mapping[str, str]) -> Response:
        """GET /api/terminals."""
        return Response.json(self.state.terminals_json())

    def get_connections(self, params: dict[str, str], query: Mapping[str, str]) -> Response:
        """GET /api/connections."""
        return Response.json(self.state.connections_json())

    def get_connection(self, params: dict[str, str], query: Mapping[str, str]) -> Response:
        """GET /api/connections/{id}."""
        return Response.json(self._lookup(self.state.connection_json, params["id"], "id"))

    def get_pipes(self, params: dict[str, str], query: Mapping[str, str]) -> Response:
        """GET /api/pipes."""
        return Response.json(self.state.pipes_json())

    def get_events(self, params: dict[str, str], query: Mapping[str, str]) -> Response:
        """GET /api/events?since=&limit=."""
        since = _int_param(query, "since", 0, 0, 2**62)
        limit = _int_param(query, "limit", 1000, 1, 10_000)
        return Response.json(self.state.events_json(since, limit))

    def get_connectome(self, params: dict[str, str], query: Mapping[str, str]) -> Response:
        """GET /api/connectome."""
        return Response.json(self.state.connectome_json())

    def get_graph(self, params: dict[str, str], query: Mapping[str, str]) -> Response:
        """GET /api/graph?format=dot|mermaid|svg."""
        fmt = query.get("format", "dot")
        if fmt not in graph.FORMATS:
            raise BadRequest(f"format {fmt!r} must be one of {', '.join(graph.FORMATS)}",
                             "format")
        try:
            text = graph.render(self.state.connectome_json(), fmt)
        except graph.GraphError as exc:
            raise SurfaceError(str(exc), "format", 503) from None
        media = "image/svg+xml" if fmt == "svg" else "text/plain; charset=utf-8"
        return Response(200, text.encode(), media)

    def get_export(self, params: dict[str, str], query: Mapping[str, str]) -> Response:
        """GET /api/export."""
        return Response(200, self.export().encode(), "application/yaml")

    def get_stream(self, params: dict[str, str], query: Mapping[str, str]) -> Response:
        """GET /api/stream is answered by the HTTP layer (it streams); never reached."""
        raise NotFound("the event stream needs the HTTP server", "path")

    def get_metrics(self, params: dict[str, str], query: Mapping[str, str]) -> Response:
        """GET /metrics."""
        return Response(200, _metrics.render(self.state).encode(),
                        "text/plain; version=0.0.4; charset=utf-8")

    def get_openapi(self, params: dict[str, str], query: Mapping[str, str]) -> Response:
        """GET /openapi.json."""
        doc = document(ROUTES)
        doc["paths"].update(self.openapi_extra)
        return Response.json(doc)

    def stream_payload(self, since: int) -> dict[str, Any]:
        """Return what one live update carries: system, servers, connections, new events."""
        return {
            "system": self.state.system_json(), "servers": self.state.servers_json(),
            "connections": self.state.connections_json(),
            "events": self.state.events_json(since, 500),
        }

    # ------------------------------------------------------------ modify

    def _actions(self) -> KernelActions:
        if self.actions is None:
            raise Conflict("this kernel is read-only (no actions attached)", "")
        return self.actions

    @staticmethod
    def _lookup(fn: Callable[[str], Any], key: str, field: str) -> Any:
        try:
            return fn(key)
        except UnknownSubject as exc:
            raise NotFound(str(exc), field) from None

    def post_connection(self, params: dict[str, str], body: dict[str, Any]) -> Response:
        """POST /api/connections {source, target}: check, connect, record."""
        source, target = body["source"], body["target"]
        check_connect(self.state, source, target)
        actions = self._actions()
        try:
            conn, pipe = actions.connect(source, target)
        except PykernelError as exc:
            raise Conflict(f"kernel refused {source} -> {target}: {exc}", "") from None
        added = self.state.add_connection(conn, pipe, "api: connect")
        self._replan()
        return Response.json(added, 201)

    def delete_connection(self, params: dict[str, str], body: dict[str, Any]) -> Response:
        """DELETE /api/connections/{id}."""
        conn_id = params["id"]
        self._lookup(self.state.connection_json, conn_id, "id")
        check_disconnect_allowed(self.state, conn_id)
        actions = self._actions()
        try:
            actions.disconnect(conn_id)
        except PykernelError as exc:
            raise Conflict(f"kernel refused to disconnect {conn_id}: {exc}", "id") from None
        removed = self.state.remove_connection(conn_id, "api: disconnect")
        self._replan()
        return Response.json(removed)

    def _replan(self) -> None:
        """Give the changed connectome the ID a plan of the running system has."""
        self.state.set_connectome_id(current_plan(self.state).connectome_id)

    def _server_action(self, name: str, verb: str, refuse_if: Callable[[str], bool],
                       why: str) -> Response:
        current = self._lookup(self.state.server_json, name, "name")["state"]
        if refuse_if(current):
            raise Conflict(f"server {name} is {current}: {why}", "name")
        actions = self._actions()
        try:
            getattr(actions, f"{verb}_server")(name)
        except PykernelError as exc:
            raise Conflict(f"kernel refused to {verb} {name}: {exc}", "name") from None
        return Response.json(self.state.server_json(name), 202)

    def post_start(self, params: dict[str, str], body: dict[str, Any]) -> Response:
        """POST /api/servers/{name}/start."""
        return self._server_action(params["name"], "start", lambda s: s in SERVER_UP,
                                   "it is up already")

    def post_stop(self, params: dict[str, str], body: dict[str, Any]) -> Response:
        """POST /api/servers/{name}/stop."""
        return self._server_action(params["name"], "stop",
                                   lambda s: s in ("stopped", "declared", "failed"),
                                   "it is not running")

    def post_restart(self, params: dict[str, str], body: dict[str, Any]) -> Response:
        """POST /api/servers/{name}/restart."""
        return self._server_action(params["name"], "restart", lambda s: False, "")
