"""Spec of Hostess's HTTP-agnostic handlers: routes, statuses, errors, nothing changed."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control.hostess import Hostess, Identity
from control.hostess.api import OPENAPI_PATHS, PREFIX, ROUTES, handle

UID = "123e4567-e89b-12d3-a456-426614174000"
GUEST = {
    "identity": f"host.lab:cam0:1200:lab-a:1:token:{UID}",
    "terminals": [
        {"name": "frames", "direction": "multiplexer", "message_size": 4096},
        {"name": "ctl", "direction": "input", "message_size": 64},
    ],
    "tags": ["gpu"],
    "metadata": {"rack": 4},
    "lease": {"ttl": 600},
}


@pytest.fixture
def book(tmp_path: Path) -> Iterator[Hostess]:
    with Hostess(tmp_path / "hostess.sqlite") as hostess:
        yield hostess


def call(book: Hostess, method: str, path: str, body: Any = None, **query: Any) -> tuple[int, dict]:
    raw = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    return handle(book, method, PREFIX + path, query, raw)


def dump(book: Hostess) -> list[str]:
    with sqlite3.connect(book.path) as db:
        return list(db.iterdump())


class TestRoutes:
    def test_guest_lifecycle(self, book: Hostess) -> None:
        """Register, list, query, fetch, heartbeat and leave over the handlers."""
        status, payload = call(book, "POST", "/guests", GUEST)
        assert status == 201 and payload["guest"]["identity"] == GUEST["identity"]
        assert call(book, "GET", "/guests")[1]["count"] == 1
        status, payload = call(book, "GET", "/guests", q=["tag=gpu terminal.direction=input free"])
        assert status == 200 and [g["uuid"] for g in payload["guests"]] == [UID]
        assert call(book, "GET", "/guests", q="tag=cpu")[1]["count"] == 0
        assert call(book, "GET", f"/guests/{UID}")[1]["guest"]["metadata"] == {"rack": 4}
        status, payload = call(book, "POST", f"/guests/{UID}/heartbeat", {"ttl": 60})
        assert status == 200 and "expires" in payload["lease"]
        assert call(book, "DELETE", f"/guests/{UID}") == (200, {"left": UID})
        assert call(book, "GET", f"/guests/{UID}")[0] == 404

    def test_allocation_lifecycle(self, book: Hostess) -> None:
        """Allocate, list and release over the handlers."""
        call(book, "POST", "/guests", GUEST)
        status, payload = call(
            book,
            "POST",
            "/allocations",
            {
                "filter": "server=cam0 free",
                "count": 2,
                "holder": "alice",
                "lease": {"ttl": 60},
            },
        )
        assert status == 201, payload
        allocation = payload["allocation"]
        assert allocation["terminals"] == ["host.lab/cam0.frames", "host.lab/cam0.ctl"]
        assert call(book, "GET", "/allocations")[1]["allocations"] == [allocation]
        status, payload = call(
            book,
            "POST",
            "/allocations",
            {
                "filter": "free",
                "holder": "bob",
                "lease": {"ttl": 60},
            },
        )
        assert status == 409 and payload["error"]["type"] == "InsufficientError"
        status, payload = call(
            book, "POST", f"/allocations/{allocation['id']}/heartbeat", {"ttl": 120}
        )
        assert status == 200 and "expires" in payload["lease"]
        assert call(book, "DELETE", f"/allocations/{allocation['id']}") == (200, {"released": 2})

    def test_connectome(self, book: Hostess) -> None:
        """PUT records the connectome; GET returns what Hostess holds."""
        call(book, "POST", "/guests", GUEST)
        other = dict(
            GUEST,
            identity=f"host.lab:view:1:o:0:none:{uuid.uuid4()}",
            terminals=[{"name": "inp", "direction": "input", "message_size": 8}],
        )
        call(book, "POST", "/guests", other)
        conn = {"id": "c-1", "src": "cam0.frames", "dst": "view.inp"}
        status, payload = call(
            book,
            "PUT",
            "/connectome",
            {
                "id": "k",
                "version": 1,
                "connections": [conn],
            },
        )
        assert status == 200
        expected = {"id": "k", "version": 1, "connections": [conn]}
        assert payload["connectome"] == expected
        assert call(book, "GET", "/connectome") == (200, {"connectome": expected})
        assert call(book, "POST", "/expire") == (200, {"expired": {"guests": 0, "uses": 0}})

    def test_openapi_covers_every_route(self) -> None:
        """Every route and method is described in the OpenAPI fragment."""
        described = {(path, m.upper()) for path, ops in OPENAPI_PATHS.items() for m in ops}
        served = {(PREFIX + template, m) for template, _, handlers, _ in ROUTES for m in handlers}
        assert described == served


ERRORS = [
    ("GET", "/guests", None, {"q": "ownr=x"}, 400, "QueryError"),
    ("GET", "/guests", None, {"limit": "0"}, 400, "InputError"),
    ("GET", "/guests", None, {"bogus": "1"}, 400, "InputError"),
    ("GET", "/guests", None, {"q": ["a", "b"]}, 400, "InputError"),
    ("GET", "/guests/not-a-uuid", None, {}, 400, "IdentityError"),
    ("GET", f"/guests/{uuid.uuid4()}", None, {}, 404, "NotFoundError"),
    ("POST", "/guests", b"{not json", {}, 400, "InputError"),
    ("POST", "/guests", b"\xff\xfe", {}, 400, "InputError"),
    ("POST", "/guests", [1, 2], {}, 400, "InputError"),
    ("POST", "/guests", {"identity": GUEST["identity"]}, {}, 400, "InputError"),
    ("POST", "/guests", dict(GUEST, extra=1), {}, 400, "InputError"),
    ("POST", "/guests", dict(GUEST, identity="a:b"), {}, 400, "IdentityError"),
    ("POST", "/guests", dict(GUEST, lease={"ttl": -1}), {}, 400, "InputError"),
    ("POST", "/guests", dict(GUEST, lease={"pid": 0}), {}, 400, "InputError"),
    ("POST", "/guests", dict(GUEST, lease={"ttl": 1, "pid": 1}), {}, 400, "InputError"),
    ("POST", "/guests", dict(GUEST, terminals="x"), {}, 400, "InputError"),
    (
        "POST",
        "/allocations",
        {"holder": "a", "lease": {"ttl": 9}, "filter": 5},
        {},
        400,
        "InputError",
    ),
    (
        "POST",
        "/allocations",
        {"holder": "a", "lease": {"ttl": 9}, "count": "2"},
        {},
        400,
        "InputError",
    ),
    ("POST", "/allocations", {"holder": "a"}, {}, 400, "InputError"),
    ("DELETE", "/allocations/nope", None, {}, 404, "NotFoundError"),
    ("PUT", "/connectome", {"id": "k", "version": 1}, {}, 400, "InputError"),
    (
        "PUT",
        "/connectome",
        {"id": "k", "version": 1, "connections": [["c", "a.b"]]},
        {},
        400,
        "InputError",
    ),
    ("PATCH", "/guests", None, {}, 405, "MethodNotAllowed"),
    ("GET", "/nowhere", None, {}, 404, "NotFound"),
]


class TestErrors:
    @pytest.mark.parametrize(("method", "path", "body", "query", "status", "kind"), ERRORS)
    def test_status_and_nothing_changes(
        self,
        book: Hostess,
        method: str,
        path: str,
        body: Any,
        query: dict,
        status: int,
        kind: str,
    ) -> None:
        """Each bad request has its status and error type, and the database is unchanged."""
        call(book, "POST", "/guests", dict(GUEST, identity=f"h.lab:x:1:o:0:none:{uuid.uuid4()}"))
        before = dump(book)
        got_status, payload = call(book, method, path, body, **query)
        assert (got_status, payload["error"]["type"]) == (status, kind), payload
        assert payload["error"]["message"]
        assert dump(book) == before

    def test_query_error_carries_caret(self, book: Hostess) -> None:
        """A filter error tells the column and draws the caret."""
        status, payload = call(book, "GET", "/guests", q="tag=gpu ownr=x")
        error = payload["error"]
        assert status == 400
        assert (error["column"], error["token"]) == (9, "ownr")
        assert error["caret"] == "tag=gpu ownr=x\n        ^~~~"

    def test_outside_prefix(self, book: Hostess) -> None:
        """Paths outside the Hostess prefix are not found."""
        assert handle(book, "GET", "/api/other", {}, b"")[0] == 404

    # One registry for all examples is intended: random bytes never parse into a change.
    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        body=st.binary(max_size=200),
        path=st.sampled_from(
            ["/guests", "/allocations", "/connectome", f"/guests/{UID}/heartbeat"]
        ),
    )
    def test_fuzzed_bodies(self, book: Hostess, body: bytes, path: str) -> None:
        """Random bodies never escape as exceptions: always a status and a payload."""
        for method in ("POST", "PUT"):
            status, payload = handle(book, method, PREFIX + path, {}, body)
            assert status in (200, 201, 400, 404, 405, 409)
            assert isinstance(payload, dict)

    # One registry for all examples is intended: each compares against its own "before".
    @settings(
        max_examples=100,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        body=st.dictionaries(
            st.sampled_from(
                [
                    "identity",
                    "terminals",
                    "tags",
                    "metadata",
                    "lease",
                    "filter",
                    "count",
                    "holder",
                    "connection",
                    "whole_guests",
                    "id",
                    "version",
                    "connections",
                    "ttl",
                    "pid",
                ]
            ),
            st.recursive(
                st.none()
                | st.booleans()
                | st.integers(-5, 5)
                | st.floats(allow_nan=True)
                | st.text(max_size=12)
                | st.sampled_from([GUEST["identity"], "cam0.frames", "free"]),
                lambda inner: (
                    st.lists(inner, max_size=3)
                    | st.dictionaries(
                        st.sampled_from(
                            ["name", "direction", "message_size", "ttl", "pid", "id", "src", "dst"]
                        ),
                        inner,
                        max_size=3,
                    )
                ),
                max_leaves=8,
            ),
            max_size=6,
        ),
        path=st.sampled_from(["/guests", "/allocations", "/connectome"]),
    )
    def test_fuzzed_json(self, book: Hostess, body: dict, path: str) -> None:
        """Random JSON objects get a typed answer; a refusal changes nothing."""
        before = dump(book)
        for method in ("POST", "PUT"):
            status, payload = handle(book, method, PREFIX + path, {}, json.dumps(body).encode())
            assert status in (200, 201, 400, 404, 405, 409), payload
            if status >= 400:
                assert dump(book) == before


class TestMount:
    def test_changes_need_authorization(self, book: Hostess) -> None:
        """Mounted on the surface, every method but GET goes through authorize()."""
        from control.hostess.api import mount
        from control.surface import Request

        serve = mount(book, authorize=lambda request: request.headers.get("authorization") == "ok")
        body = json.dumps(GUEST).encode()
        refused = serve(Request("POST", f"{PREFIX}/guests", {}, {}, body))
        assert refused.status == 401 and book.query("") == []
        allowed = serve(Request("POST", f"{PREFIX}/guests", {}, {"authorization": "ok"}, body))
        assert allowed.status == 201
        listed = serve(Request("GET", f"{PREFIX}/guests", {"q": "tag=gpu"}, {}, b""))
        assert json.loads(listed.body)["count"] == 1


class TestExports:
    def test_public_surface(self) -> None:
        """The package's public names are exactly these (changes are deliberate)."""
        import control.hostess

        assert sorted(control.hostess.__all__) == sorted(
            [
                "AUTH_MECHANISMS",
                "DIRECTIONS",
                "Allocation",
                "ConflictError",
                "Connection",
                "Connectome",
                "Guest",
                "Hostess",
                "HostessError",
                "Identity",
                "IdentityError",
                "InputError",
                "InsufficientError",
                "Lease",
                "NotFoundError",
                "Page",
                "Query",
                "QueryError",
                "SchemaError",
                "Terminal",
                "TerminalSpec",
                "Use",
                "parse",
            ]
        )
        for name in control.hostess.__all__:
            assert getattr(control.hostess, name).__doc__ or name.isupper(), name

    def test_rules_shared_with_manifest(self) -> None:
        """Identity and terminal rules are the manifest's, so lint and Hostess agree."""
        import control.manifest
        from control.hostess import AUTH_MECHANISMS, DIRECTIONS

        assert AUTH_MECHANISMS == control.manifest.AUTH_MECHANISMS
        assert DIRECTIONS == control.manifest.DIRECTIONS
        manifest = control.manifest.Manifest("cam0", "0x1200", "lab-a", 1, "token")
        identity = Identity.parse(manifest.identity("host.lab", UID))
        assert (identity.servername, identity.klass, identity.auth_flag) == ("cam0", 0x1200, True)
