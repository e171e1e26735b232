"""The control surface's errors: each carries its HTTP status and the offending field."""

from __future__ import annotations

from typing import Any

from control.state_model import StateError


class SurfaceError(StateError):
    """A request the control surface refuses; nothing was changed.

    Attributes:
        status: the HTTP status it is answered with (4xx; 5xx only for kernel failures).
        field: the request field at fault (``source``, ``body``, ``id``...) or "".

    """

    status = 400

    def __init__(self, message: str, field: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if status is not None:
            self.status = status

    def to_json(self) -> dict[str, Any]:
        """Return the JSON error body: ``{"error": {"status", "message", "field"}}``."""
        return {"error": {"status": self.status, "message": self.message, "field": self.field}}


class BadRequest(SurfaceError):
    """Malformed request: bad JSON, wrong type, unknown or missing field (400)."""

    status = 400


class Unauthorized(SurfaceError):
    """A modify request without a valid bearer token (401)."""

    status = 401


class NotFound(SurfaceError):
    """An unknown route, server, terminal or connection ID (404)."""

    status = 404


class Conflict(SurfaceError):
    """The request clashes with the current state (already connected, already stopped) (409)."""

    status = 409


class Refused(SurfaceError):
    """A modify that the wiring rules forbid (the same rules lint applies) (422)."""

    status = 422
