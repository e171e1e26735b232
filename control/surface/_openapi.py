"""The OpenAPI 3.1 description of the control surface, generated from the route table."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from control.state_model import CONNECTION, KERNEL, SERVER
from control.surface._routes import Route
from control.surface._schemas import RETURNS, SCHEMAS

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object", "required": ["status", "message", "field"],
        "properties": {"status": {"type": "integer"}, "message": {"type": "string"},
                       "field": {"type": "string",
                                 "description": "the request field at fault, or ''"}},
    }},
}

_STATUS_TEXT = {
    400: "Malformed request (bad JSON, wrong type, unknown or missing field)",
    401: "Missing or wrong bearer token",
    404: "Unknown route, server, terminal or connection",
    409: "Clashes with the current state, or the kernel refused",
    413: "Body too large", 415: "Body is not application/json",
    422: "Refused by the wiring rules (the same checks as lint)",
    503: "Needs a tool this host lacks (graphviz for svg)",
}


def _operation(route: Route) -> dict[str, Any]:
    content: dict[str, Any] = {}
    if route.handler in RETURNS:
        content["schema"] = RETURNS[route.handler]
    op: dict[str, Any] = {
        "operationId": route.handler, "summary": route.summary,
        "responses": {"200" if route.method == "GET" else "2XX": {
            "description": "OK", "content": {route.media: content}}},
    }
    params = [{"name": p[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
              for p in route.pattern.split("/") if p.startswith("{")]
    params += [{"name": k, "in": "query", "required": False, "description": v,
                "schema": {"type": "string"}} for k, v in route.query.items()]
    if params:
        op["parameters"] = params
    errors = [404] if "{" in route.pattern else []
    if route.query:
        errors.append(400)
    if route.modify:
        op["security"] = [{"bearer": []}]
        errors += [400, 401, 409]
        if route.body:
            errors += [413, 415, 422]
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False,
                "required": list(route.body),
                "properties": {k: {"type": v} for k, v in route.body.items()}}}}}
    if route.handler == "get_graph":
        errors.append(503)
    for status in sorted(set(errors)):
        op["responses"][str(status)] = {
            "description": _STATUS_TEXT[status],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return op


def document(routes: Iterable[Route]) -> dict[str, Any]:
    """Return the OpenAPI document for ``routes``."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.pattern, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {"title": "pykernel control surface", "version": "1",
                 "description": "Query and modify a running pykernel system. Modify routes need "
                                "the bearer token stored (0600) in the kernel's run directory."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": _ERROR,
                **SCHEMAS,
                "KernelState": {"type": "string", "enum": list(KERNEL.states)},
                "ServerState": {"type": "string", "enum": list(SERVER.states)},
                "ConnectionState": {"type": "string", "enum": list(CONNECTION.states)},
            },
        },
    }
