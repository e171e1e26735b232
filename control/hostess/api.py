"""Hostess's HTTP routes, free of any HTTP server: the control surface mounts :func:`handle`.

On the control surface: ``Surface(..., mounts={"/api/hostess/": mount(hostess, authorize)})``
where ``authorize(request) -> bool`` checks the bearer token for the changing methods.

``handle(hostess, method, path, query, body) -> (status, payload)`` takes the decoded parts
of a request (``query`` maps a name to a string or a list of strings, as ``parse_qs`` gives)
and returns a status and a JSON-ready payload. :data:`OPENAPI_PATHS` describes the routes.

Errors come back as ``{"error": {"type", "message", ...}}``: 400 for bad input (a query error
adds ``column``, ``token`` and ``caret``; an identity error adds ``field``), 404 for an
unknown guest, allocation or route, 405 for a wrong method, 409 for a conflict or too few
free terminals. Nothing changes when an error is returned.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from control.hostess.errors import (
    ConflictError,
    HostessError,
    IdentityError,
    InputError,
    NotFoundError,
    QueryError,
)
from control.hostess.lease import Lease
from control.hostess.registry import Hostess

PREFIX = "/api/hostess"
"""Where the routes live on the control surface."""
MAX_BODY = 16 << 20
"""Largest accepted request body, in bytes."""

Payload = dict[str, Any]
Response = tuple[int, Payload]
_Handler = Callable[[Hostess, dict[str, str], Payload, tuple[str, ...]], Response]


def error_payload(exc: HostessError) -> Response:
    """Map a Hostess error to its HTTP status and JSON payload."""
    detail: Payload = {"type": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, QueryError):
        detail.update(column=exc.column, token=exc.token, caret=exc.caret())
    elif isinstance(exc, IdentityError):
        detail.update(field=exc.field)
    elif isinstance(exc, InputError):
        detail.update(where=exc.where)
    if isinstance(exc, NotFoundError):
        status = 404
    elif isinstance(exc, ConflictError):
        status = 409
    elif isinstance(exc, QueryError | IdentityError | InputError):
        status = 400
    else:
        status = 500
    return status, {"error": detail}


def _lease(body: Payload, where: str, default: Lease | None = None) -> Lease:
    spec = body.get("lease")
    if spec is None:
        if default is None:
            raise InputError(where, 'needs {"ttl": seconds} or {"pid": pid}')
        return default
    if not isinstance(spec, dict) or len(spec) != 1 or not set(spec) <= {"ttl", "pid"}:
        raise InputError(where, 'must be {"ttl": seconds} or {"pid": pid}')
    if "ttl" in spec:
        return Lease.heartbeat(spec["ttl"])
    return Lease.process(spec["pid"])


def _fields(body: Payload, required: set[str], optional: set[str], where: str) -> None:
    missing = required - set(body)
    if missing:
        raise InputError(where, f"missing {', '.join(sorted(missing))}")
    extra = set(body) - required - optional
    if extra:
        raise InputError(where, f"unknown field {', '.join(sorted(extra))}")


def _list_guests(h: Hostess, q: dict[str, str], _b: Payload, _a: tuple[str, ...]) -> Response:
    limit = q.get("limit", "1000")
    if not re.fullmatch(r"[1-9][0-9]{0,6}", limit):
        raise InputError("query.limit", f"{limit!r} must be an integer in [1, 9999999]")
    h.expire()
    try:
        page = h.page(q.get("q", ""), limit=int(limit), after=q.get("after"))
    except InputError as exc:
        raise InputError(f"query.{exc.where}", exc.reason) from None
    return 200, page.to_dict()


def _register(h: Hostess, _q: dict[str, str], body: Payload, _a: tuple[str, ...]) -> Response:
    _fields(body, {"identity", "lease"}, {"terminals", "tags", "metadata"}, "body")
    guest = h.register(
        body["identity"],
        body.get("terminals", []),
        tags=body.get("tags", []),
        metadata=body.get("metadata", {}),
        lease=_lease(body, "body.lease"),
    )
    return 201, {"guest": guest.to_dict()}


def _get_guest(h: Hostess, _q: dict[str, str], _b: Payload, args: tuple[str, ...]) -> Response:
    return 200, {"guest": h.get(args[0]).to_dict()}


def _leave(h: Hostess, _q: dict[str, str], _b: Payload, args: tuple[str, ...]) -> Response:
    h.leave(args[0])
    return 200, {"left": args[0]}


def _heartbeat(h: Hostess, _q: dict[str, str], body: Payload, args: tuple[str, ...]) -> Response:
    _fields(body, {"ttl"}, set(), "body")
    return 200, {"lease": h.heartbeat(args[0], body["ttl"]).to_dict()}


def _list_allocations(h: Hostess, _q: dict[str, str], _b: Payload, _a: tuple[str, ...]) -> Response:
    h.expire()
    return 200, {"allocations": [a.to_dict() for a in h.allocations()]}


def _allocate(h: Hostess, _q: dict[str, str], body: Payload, _a: tuple[str, ...]) -> Response:
    optional = {"filter", "count", "connection", "whole_guests"}
    _fields(body, {"holder", "lease"}, optional, "body")
    expr = body.get("filter", "")
    if not isinstance(expr, str):
        raise InputError("body.filter", "must be a string")
    allocation = h.allocate(
        expr,
        body.get("count", 1),
        holder=body["holder"],
        connection=body.get("connection"),
        whole_guests=body.get("whole_guests", False),
        lease=_lease(body, "body.lease"),
    )
    return 201, {"allocation": allocation.to_dict()}


def _release(h: Hostess, _q: dict[str, str], _b: Payload, args: tuple[str, ...]) -> Response:
    return 200, {"released": h.release(args[0])}


def _renew(h: Hostess, _q: dict[str, str], body: Payload, args: tuple[str, ...]) -> Response:
    _fields(body, {"ttl"}, set(), "body")
    return 200, {"lease": h.renew(args[0], body["ttl"]).to_dict()}


def _get_connectome(h: Hostess, _q: dict[str, str], _b: Payload, _a: tuple[str, ...]) -> Response:
    return 200, {"connectome": h.connectome().to_dict()}


def _put_connectome(h: Hostess, _q: dict[str, str], body: Payload, _a: tuple[str, ...]) -> Response:
    _fields(body, {"id", "version", "connections"}, {"lease"}, "body")
    # Without a lease the kernel (this process, which serves the control surface) holds them.
    lease = _lease(body, "body.lease", default=Lease.process())
    held = h.record_connectome(body["id"], body["version"], body["connections"], lease=lease)
    return 200, {"connectome": held.to_dict()}


def _expire(h: Hostess, _q: dict[str, str], _b: Payload, _a: tuple[str, ...]) -> Response:
    return 200, {"expired": h.expire()}


_SEGMENT = r"([^/]+)"
ROUTES: tuple[tuple[str, re.Pattern[str], Mapping[str, _Handler], frozenset[str]], ...] = tuple(
    (template, re.compile(pattern + r"\Z"), handlers, frozenset(params))
    for template, pattern, handlers, params in (
        (
            "/guests",
            "/guests",
            {"GET": _list_guests, "POST": _register},
            {"q", "limit", "after"},
        ),
        ("/guests/{uuid}", f"/guests/{_SEGMENT}", {"GET": _get_guest, "DELETE": _leave}, ()),
        ("/guests/{uuid}/heartbeat", f"/guests/{_SEGMENT}/heartbeat", {"POST": _heartbeat}, ()),
        ("/allocations", "/allocations", {"GET": _list_allocations, "POST": _allocate}, ()),
        ("/allocations/{id}", f"/allocations/{_SEGMENT}", {"DELETE": _release}, ()),
        ("/allocations/{id}/heartbeat", f"/allocations/{_SEGMENT}/heartbeat", {"POST": _renew}, ()),
        ("/connectome", "/connectome", {"GET": _get_connectome, "PUT": _put_connectome}, ()),
        ("/expire", "/expire", {"POST": _expire}, ()),
    )
)
"""(path template, pattern, handlers by method, accepted query parameters) per route."""


def _query_params(query: Mapping[str, Any], accepted: frozenset[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in query.items():
        if name not in accepted:
            known = ", ".join(sorted(accepted)) or "none"
            raise InputError(f"query.{name}", f"unknown parameter (accepted: {known})")
        if isinstance(value, list | tuple):
            if len(value) != 1:
                raise InputError(f"query.{name}", "give it once")
            value = value[0]
        if not isinstance(value, str):
            raise InputError(f"query.{name}", "must be a string")
        params[name] = value
    return params


def _body(body: bytes, method: str) -> Payload:
    if method not in ("POST", "PUT") or not body.strip():
        return {}
    if len(body) > MAX_BODY:
        raise InputError("body", f"{len(body)} bytes, at most {MAX_BODY}")
    try:
        data = json.loads(body)
    except UnicodeDecodeError as exc:
        raise InputError("body", f"not UTF-8 at byte {exc.start}") from exc
    except json.JSONDecodeError as exc:
        raise InputError(
            "body", f"bad JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    if not isinstance(data, dict):
        raise InputError("body", "must be a JSON object")
    return data


def handle(
    hostess: Hostess, method: str, path: str, query: Mapping[str, Any], body: bytes
) -> Response:
    """Serve one Hostess request.

    Args:
        hostess: the registry.
        method: the HTTP method (``GET``, ``POST``, ``PUT``, ``DELETE``).
        path: the request path, starting with :data:`PREFIX`.
        query: decoded query parameters (string or list of strings per name).
        body: the raw request body (JSON for ``POST`` and ``PUT``).

    Returns:
        ``(status, payload)``; errors carry ``{"error": {...}}`` and change nothing.

    """
    if not path.startswith(PREFIX + "/"):
        return 404, {"error": {"type": "NotFound", "message": f"no Hostess route {path}"}}
    rest = path[len(PREFIX) :].rstrip("/") or "/"
    for _template, pattern, handlers, accepted in ROUTES:
        match = pattern.match(rest)
        if match is None:
            continue
        handler = handlers.get(method.upper())
        if handler is None:
            allowed = ", ".join(sorted(handlers))
            message = f"{method} not allowed on {path} (allowed: {allowed})"
            return 405, {"error": {"type": "MethodNotAllowed", "message": message}}
        try:
            return handler(
                hostess, _query_params(query, accepted), _body(body, method), match.groups()
            )
        except HostessError as exc:
            return error_payload(exc)
    return 404, {"error": {"type": "NotFound", "message": f"no Hostess route {path}"}}


def _op(
    summary: str, status: int, body: str | None = None, params: tuple[str, ...] = ()
) -> Payload:
    op: Payload = {
        "summary": summary,
        "tags": ["hostess"],
        "responses": {
            str(status): {"description": "success"},
            "400": {"description": "bad input (nothing changed)"},
            "404": {"description": "no such guest, allocation or route"},
            "409": {"description": "conflict or too few free terminals (nothing changed)"},
        },
    }
    if body:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object", "description": body}}},
        }
    if params:
        op["parameters"] = [
            {
                "name": name,
                "in": "path" if name in ("uuid", "id") else "query",
                "required": name in ("uuid", "id"),
                "schema": {"type": "string"},
            }
            for name in params
        ]
    return op


OPENAPI_PATHS: dict[str, Payload] = {
    f"{PREFIX}/guests": {
        "get": _op(
            "List guests matching a filter, a page at a time (q: the filter expression; "
            "after: the previous page's next)",
            200,
            params=("q", "limit", "after"),
        ),
        "post": _op(
            "Register a guest",
            201,
            "identity, lease {ttl|pid}; optional terminals [{name, direction, "
            "message_size}], tags [str], metadata {}",
        ),
    },
    f"{PREFIX}/guests/{{uuid}}": {
        "get": _op("One guest", 200, params=("uuid",)),
        "delete": _op("The guest leaves", 200, params=("uuid",)),
    },
    f"{PREFIX}/guests/{{uuid}}/heartbeat": {
        "post": _op("Renew a heartbeat lease", 200, "ttl (seconds)", params=("uuid",)),
    },
    f"{PREFIX}/allocations": {
        "get": _op("List live allocations", 200),
        "post": _op(
            "Allocate free terminals (or whole guests) atomically",
            201,
            "holder, lease {ttl|pid}; optional filter, count, connection, whole_guests",
        ),
    },
    f"{PREFIX}/allocations/{{id}}": {
        "delete": _op("Release an allocation", 200, params=("id",)),
    },
    f"{PREFIX}/allocations/{{id}}/heartbeat": {
        "post": _op("Renew an allocation's heartbeat lease", 200, "ttl (seconds)", params=("id",)),
    },
    f"{PREFIX}/connectome": {
        "get": _op("The connectome as Hostess holds it", 200),
        "put": _op(
            "Record the kernel's connectome",
            200,
            "id, version, connections [{id, src, dst}]; optional lease {ttl|pid}",
        ),
    },
    f"{PREFIX}/expire": {"post": _op("Expire lapsed guests and uses now", 200)},
}
"""The OpenAPI ``paths`` fragment for Hostess's routes."""


def mount(hostess: Hostess, authorize: Callable[[Any], bool] | None = None) -> Callable[[Any], Any]:
    """Adapt :func:`handle` to the control surface's ``mounts`` (Request -> Response).

    Args:
        hostess: the registry to serve.
        authorize: called with the request for every method but GET; False answers 401.
            None lets every request through (only for a surface that checks itself).

    Returns:
        A handler taking the surface's ``Request`` and returning its ``Response``.

    """
    from control.surface import Request, Response  # the surface is the caller's layer

    def serve(request: Request) -> Response:
        if request.method.upper() != "GET" and authorize is not None and not authorize(request):
            message = "changing Hostess needs 'Authorization: Bearer <token>'"
            return Response.json({"error": {"type": "Unauthorized", "message": message}}, 401)
        status, payload = handle(
            hostess, request.method, request.path, dict(request.query), request.body
        )
        return Response.json(payload, status)

    return serve
