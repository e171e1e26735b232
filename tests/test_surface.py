"""The control surface over real HTTP: queries, auth, refusals, bad requests, export."""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_surface_kit import booted, call, plan_of

from control.lint import lint_file
from control.plan import build_plan
from control.state import SystemState
from control.surface import INFO_FILE, ROUTES, TOKEN_FILE, Surface, SurfaceError


class _Recorder:
    """KernelActions that records calls and changes nothing (for refusal tests only:
    a refused request must never reach the kernel)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def connect(self, source: str, target: str) -> Any:
        self.calls.append(("connect", f"{source}->{target}"))
        raise AssertionError("a refused connect reached the kernel")

    def disconnect(self, connection_id: str) -> None:
        self.calls.append(("disconnect", connection_id))
        raise AssertionError("a refused disconnect reached the kernel")

    def start_server(self, name: str) -> None:
        self.calls.append(("start", name))
        raise AssertionError("a refused start reached the kernel")

    def stop_server(self, name: str) -> None:
        self.calls.append(("stop", name))
        raise AssertionError("a refused stop reached the kernel")

    def restart_server(self, name: str) -> None:
        self.calls.append(("restart", name))
        raise AssertionError("a refused restart reached the kernel")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Surface, _Recorder]]:
    """One surface over a booted state whose kernel must never be reached."""
    root = tmp_path_factory.mktemp("surface")
    state = booted(plan_of(root))
    recorder = _Recorder()
    surface = Surface(state, recorder, run_dir=root / "run").start()
    yield surface, recorder
    surface.stop()


def _snapshot(surface: Surface) -> str:
    s = surface.state
    return json.dumps([s.system_json(), s.servers_json(), s.connections_json(),
                       s.pipes_json(), len(s.events())], sort_keys=True)


class TestQueries:
    """Every query route answers JSON from the state machine."""

    def test_system(self, served) -> None:  # type: ignore[no-untyped-def]
        """System: kernel state, counts, connectome ID and version."""
        surface, _ = served
        status, body = call("GET", surface.url + "/api/system")
        assert status == 200
        assert (body["system"], body["state"], body["servers"], body["connections"]) == (
            "t", "running", 5, 4)
        assert body["connectome"]["version"] == 1
        assert len(body["connectome"]["id"]) == 64

    def test_lists(self, served) -> None:  # type: ignore[no-untyped-def]
        """Servers, terminals, connections, pipes and events list everything."""
        surface, _ = served
        url = surface.url
        assert [s["name"] for s in call("GET", url + "/api/servers")[1]] == [
            "a", "b", "sink", "spare", "src"]
        terms = {t["id"] for t in call("GET", url + "/api/terminals")[1]}
        assert {"src.out", "sink.inp", "spare.arr"} <= terms
        conns = call("GET", url + "/api/connections")[1]
        assert {(c["source"], c["target"]) for c in conns} >= {("src.out", "a.inp")}
        assert all(set(c["flow"]) >= {"msgs_per_s", "bytes_per_s", "fill_pct", "drops",
                                      "writer_waits"} for c in conns)
        pipes = call("GET", url + "/api/pipes")[1]
        assert {p["shape"] for p in pipes} == {"multiplexer", "combiner"}
        events = call("GET", url + "/api/events?since=0&limit=3")[1]
        assert [e["seq"] for e in events] == [1, 2, 3]

    def test_one_server_and_connection(self, served) -> None:  # type: ignore[no-untyped-def]
        """Single items by name or ID."""
        surface, _ = served
        server = call("GET", surface.url + "/api/servers/src")[1]
        assert server["terminals"][0]["direction"] == "multiplexer"
        cid = surface.state.connections_json()[0]["id"]
        assert call("GET", f"{surface.url}/api/connections/{cid}")[1]["id"] == cid

    def test_connectome(self, served) -> None:  # type: ignore[no-untyped-def]
        """The connectome carries its ID, version and the whole graph."""
        surface, _ = served
        cx = call("GET", surface.url + "/api/connectome")[1]
        assert cx["version"] == 1 and len(cx["connections"]) == 4
        assert cx["pipes"]["t.src.out"]["shape"] == "multiplexer"

    def test_lifecycles(self, served) -> None:  # type: ignore[no-untyped-def]
        """The lifecycle tables are served as data."""
        body = call("GET", served[0].url + "/api/lifecycles")[1]
        assert body["connection"]["initial"] == "planned"

    @pytest.mark.parametrize("fmt", ["dot", "mermaid", "svg"])
    def test_graph_formats(self, served, fmt: str) -> None:  # type: ignore[no-untyped-def]
        """The diagram comes in dot, mermaid and svg."""
        if fmt == "svg":
            from conftest import require_tool

            require_tool("dot")
        status, text = call("GET", f"{served[0].url}/api/graph?format={fmt}")
        assert status == 200
        assert {"dot": "digraph", "mermaid": "flowchart LR", "svg": "<svg"}[fmt] in text

    def test_metrics(self, served) -> None:  # type: ignore[no-untyped-def]
        """Prometheus text: HELP/TYPE lines, labelled samples."""
        status, text = call("GET", served[0].url + "/metrics")
        assert status == 200
        assert '# TYPE pykernel_connection_messages_total counter' in text
        assert 'pykernel_server_state{server="src",state="running"} 1' in text
        for line in text.splitlines():
            assert line.startswith("#") or line.rsplit(" ", 1)[1].replace(".", "").isdigit()

    def test_openapi_lists_every_route(self, served) -> None:  # type: ignore[no-untyped-def]
        """/openapi.json documents every route with its method."""
        doc = call("GET", served[0].url + "/openapi.json")[1]
        assert doc["openapi"].startswith("3.")
        for route in ROUTES:
            assert route.method.lower() in doc["paths"][route.pattern]
        post = doc["paths"]["/api/connections"]["post"]
        assert post["security"] == [{"bearer": []}]
        assert "422" in post["responses"]

    def test_answers_match_the_openapi_schemas(self, served) -> None:  # type: ignore[no-untyped-def]
        """Every JSON query route's answer fits the schema /openapi.json gives for it."""
        surface, _ = served
        doc = call("GET", surface.url + "/openapi.json")[1]
        cid = surface.state.connections_json()[0]["id"]
        checked = 0
        for pattern, ops in doc["paths"].items():
            content = ops.get("get", {}).get("responses", {}).get("200", {}).get("content", {})
            schema = content.get("application/json", {}).get("schema")
            if schema is None:
                continue
            path = pattern.replace("{name}", "src").replace("{id}", cid)
            status, body = call("GET", surface.url + path)
            assert status == 200
            _conforms(body, schema, doc["components"]["schemas"], pattern)
            checked += 1
        assert checked == 9

    def test_schema_check_catches_a_bad_answer(self, served) -> None:  # type: ignore[no-untyped-def]
        """The check above is not vacuous: a wrong type or state is caught."""
        defs = call("GET", served[0].url + "/openapi.json")[1]["components"]["schemas"]
        good = served[0].state.connections_json()[0]
        with pytest.raises(AssertionError, match="not in"):
            _conforms({**good, "state": "dancing"}, {"$ref": "#/x/Connection"}, defs, "c")
        with pytest.raises(AssertionError, match="missing 'flow'"):
            _conforms({k: v for k, v in good.items() if k != "flow"},
                      {"$ref": "#/x/Connection"}, defs, "c")

    def test_hmi_files(self, served) -> None:  # type: ignore[no-untyped-def]
        """The HMI page and its script and style are served."""
        url = served[0].url
        assert "<title>pykernel HMI</title>" in call("GET", url + "/")[1]
        assert "EventSource" in call("GET", url + "/hmi.js")[1]
        assert "table" in call("GET", url + "/hmi.css")[1]


class TestAuth:
    """Modify needs the bearer token from the run directory."""

    def test_token_file_is_owner_only(self, served) -> None:  # type: ignore[no-untyped-def]
        """surface.token is 0600 and holds the token; surface.json tells the URL."""
        surface, _ = served
        path = surface.run_dir / TOKEN_FILE
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert path.read_text().strip() == surface.token
        info = json.loads((surface.run_dir / INFO_FILE).read_text())
        assert info["url"] == surface.url and info["pid"] == os.getpid()

    @pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic abc", "Bearer", ""])
    def test_modify_without_token(self, served, header: str | None) -> None:  # type: ignore[no-untyped-def]
        """401, JSON error naming the field, and nothing reaches the kernel."""
        surface, recorder = served
        before = _snapshot(surface)
        headers = {"Authorization": header} if header is not None else {}
        status, body = call("POST", surface.url + "/api/servers/a/stop", headers=headers)
        assert status == 401
        assert body["error"]["field"] == "authorization"
        assert recorder.calls == []
        assert _snapshot(surface) == before

    def test_queries_need_no_token(self, served) -> None:  # type: ignore[no-untyped-def]
        """Reading is open (on loopback)."""
        assert call("GET", served[0].url + "/api/servers")[0] == 200

    def test_foreign_host_header_refused(self, served) -> None:  # type: ignore[no-untyped-def]
        """A loopback surface refuses other Host names (DNS rebinding)."""
        status, body = call("GET", served[0].url + "/api/system",
                            headers={"Host": "evil.example:80"})
        assert status == 403 and body["error"]["field"] == "host"

    def test_port_in_use_is_a_typed_error(self, served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
        """Binding a taken port names host, port and the reason."""
        host, port = served[0].address
        with pytest.raises(SurfaceError, match=rf"cannot listen on {host}:{port}: "
                                               r"Address already in use"):
            Surface(booted(plan_of(tmp_path)), host=host, port=port)

    def test_token_removed_on_stop(self, tmp_path: Path) -> None:
        """Stopping the surface removes surface.json and the token."""
        surface = Surface(booted(plan_of(tmp_path)), run_dir=tmp_path / "run").start()
        surface.stop()
        assert not (tmp_path / "run" / TOKEN_FILE).exists()
        assert not (tmp_path / "run" / INFO_FILE).exists()


class TestRefusals:
    """Refused modifies: clear 4xx JSON with message and field, nothing changed."""

    @pytest.mark.parametrize(("body", "status", "field", "match"), [
        ({"source": "nope.out", "target": "a.inp"}, 404, "source", "unknown server 'nope'"),
        ({"source": "spare.zzz", "target": "a.inp"}, 404, "source", "no terminal 'zzz'"),
        ({"source": "src.out", "target": "a.inp"}, 409, "target", "already connected"),
        ({"source": "a.inp", "target": "spare.inp"}, 422, "source", "is an input"),
        ({"source": "spare.out", "target": "src.out"}, 422, "target", "is an multiplexer"),
        ({"source": "spare.out", "target": "a.inp"}, 422, "target", "plain input"),
        ({"source": "a.res", "target": "spare.inp"}, 422, "source", "plain output"),
        ({"source": "spare.big", "target": "spare.inp"}, 422, "target", "exceed"),
        ({"source": "spare.ints", "target": "spare.arr"}, 422, "target", "float32"),
        ({"source": "src.out", "target": "sink.inp"}, 422, "target",
         "multiplexer cannot feed a combiner"),
        ({"source": "srcout", "target": "a.inp"}, 400, "source", "server.terminal"),
    ])
    def test_connect_refused(self, served, body, status, field, match) -> None:  # type: ignore[no-untyped-def]
        """Each lint rule refuses a run-time connect the same way."""
        surface, recorder = served
        before = _snapshot(surface)
        got, answer = call("POST", surface.url + "/api/connections", body, surface.token)
        assert (got, answer["error"]["field"]) == (status, field), answer
        assert match in answer["error"]["message"]
        assert recorder.calls == []
        assert _snapshot(surface) == before

    def test_unknown_connection(self, served) -> None:  # type: ignore[no-untyped-def]
        """Disconnecting an unknown ID is 404 naming it."""
        surface, recorder = served
        status, body = call("DELETE", surface.url + "/api/connections/c-000000000000",
                            token=surface.token)
        assert status == 404 and "c-000000000000" in body["error"]["message"]
        assert body["error"]["field"] == "id"
        assert recorder.calls == []

    def test_disconnect_leaving_required_input_refused(self, served) -> None:  # type: ignore[no-untyped-def]
        """b.inp is required: disconnecting its only feed is 422, nothing changes."""
        surface, recorder = served
        before = _snapshot(surface)
        cid = next(c["id"] for c in surface.state.connections_json() if c["target"] == "b.inp")
        status, body = call("DELETE", f"{surface.url}/api/connections/{cid}",
                            token=surface.token)
        assert status == 422 and body["error"]["field"] == "id"
        assert "required input terminal b.inp is not connected" in body["error"]["message"]
        assert recorder.calls == [] and _snapshot(surface) == before

    @pytest.mark.parametrize(("path", "status", "match"), [
        ("/api/servers/ghost/stop", 404, "unknown server 'ghost'"),
        ("/api/servers/a/start", 409, "up already"),
    ])
    def test_server_action_refused(self, served, path, status, match) -> None:  # type: ignore[no-untyped-def]
        """Unknown servers and pointless moves are refused before the kernel."""
        surface, recorder = served
        got, body = call("POST", surface.url + path, token=surface.token)
        assert got == status and match in body["error"]["message"]
        assert recorder.calls == []

    @pytest.mark.parametrize(("method", "path", "status"), [
        ("GET", "/api/nothing", 404), ("PUT", "/api/servers", 405),
        ("DELETE", "/api/servers/a", 405), ("GET", "/api/servers/a/stop", 405),
    ])
    def test_routes(self, served, method, path, status) -> None:  # type: ignore[no-untyped-def]
        """Unknown paths are 404, known paths with the wrong method 405."""
        got, body = call(method, served[0].url + path, token=served[0].token)
        assert got == status and body["error"]["message"]

    @pytest.mark.parametrize(("query", "field"), [
        ("format=png", "format"), ("since=x", "since"), ("limit=0", "limit"),
    ])
    def test_bad_query(self, served, query: str, field: str) -> None:  # type: ignore[no-untyped-def]
        """Bad query parameters are 400 naming the parameter."""
        path = "/api/graph" if field == "format" else "/api/events"
        status, body = call("GET", f"{served[0].url}{path}?{query}")
        assert status == 400 and body["error"]["field"] == field


class TestBadBodies:
    """Malformed bodies are 400/413/415 with the field, and change nothing."""

    @pytest.mark.parametrize(("raw", "field", "match"), [
        (b"{", "body", "not valid JSON"),
        (b"\xff\xfe", "body", "not valid JSON"),
        (b"[]", "body", "JSON object"),
        (b'"x"', "body", "JSON object"),
        (b'{"source": "src.out"}', "target", "missing field 'target'"),
        (b'{"source": 1, "target": "a.inp"}', "source", "must be a string"),
        (b'{"source": "a", "target": "b", "x": 1}', "x", "unknown field 'x'"),
        (b'{"source": null, "target": []}', "source", "must be a string"),
    ])
    def test_malformed(self, served, raw: bytes, field: str, match: str) -> None:  # type: ignore[no-untyped-def]
        """Each malformed body names what and where."""
        surface, recorder = served
        before = _snapshot(surface)
        status, body = call("POST", surface.url + "/api/connections", token=surface.token,
                            raw=raw, headers={"Content-Type": "application/json"})
        assert status == 400 and body["error"]["field"] == field
        assert match in body["error"]["message"]
        assert _snapshot(surface) == before and recorder.calls == []

    def test_wrong_content_type(self, served) -> None:  # type: ignore[no-untyped-def]
        """A form post is 415."""
        surface, _ = served
        status, body = call("POST", surface.url + "/api/connections", token=surface.token,
                            raw=b"source=a", headers={"Content-Type": "text/plain"})
        assert status == 415 and body["error"]["field"] == "body"

    def test_too_large(self, served) -> None:  # type: ignore[no-untyped-def]
        """A body over 64 KiB is 413 without being read."""
        surface, _ = served
        status, _ = call("POST", surface.url + "/api/connections", token=surface.token,
                         raw=b"{" + b" " * (70 * 1024) + b"}",
                         headers={"Content-Type": "application/json"})
        assert status == 413

    def test_body_on_a_query(self, served) -> None:  # type: ignore[no-untyped-def]
        """GET with a body is refused rather than ignored."""
        status, body = call("GET", served[0].url + "/api/system", raw=b"{}")
        assert status == 400 and body["error"]["field"] == "body"

    def test_bad_content_length(self, served) -> None:  # type: ignore[no-untyped-def]
        """A garbage Content-Length is 400 (raw socket: urllib would fix it)."""
        host, port = served[0].address
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.sendall(b"POST /api/connections HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Length: -5\r\n\r\n")
            reply = sock.recv(4096).decode()
        assert reply.startswith("HTTP/1.1 400") and "Content-Length" in reply

    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.one_of(
        st.binary(max_size=200),
        st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                     | st.text(max_size=30),
                     lambda c: st.lists(c, max_size=4)
                     | st.dictionaries(st.sampled_from(["source", "target", "x", ""]) | st.text(
                         max_size=8), c, max_size=4),
                     max_leaves=10).map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries({"source": st.text(max_size=40), "target": st.text(max_size=40)})
        .map(lambda v: json.dumps(v).encode()),
    ))
    def test_fuzzed_bodies(self, served, raw: bytes) -> None:  # type: ignore[no-untyped-def]
        """Any body: a 4xx JSON error with a message, never a 5xx, never a change."""
        surface, recorder = served
        before = _snapshot(surface)
        status, body = call("POST", surface.url + "/api/connections", token=surface.token,
                            raw=raw, headers={"Content-Type": "application/json"})
        assert 400 <= status < 500, (status, body)
        assert isinstance(body, dict) and body["error"]["message"]
        assert recorder.calls == []
        assert _snapshot(surface) == before

    @settings(max_examples=60, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.text(alphabet=st.characters(codec="ascii", exclude_characters="?#"),
                   max_size=40))
    def test_fuzzed_paths(self, served, tail: str) -> None:  # type: ignore[no-untyped-def]
        """Any path below /api/: an answer with a status, never a crash or a change."""
        import urllib.parse

        surface, recorder = served
        before = _snapshot(surface)
        path = "/api/" + urllib.parse.quote(tail)
        status, _ = call("DELETE", surface.url + path, token=surface.token)
        assert status in (200, 404, 405)
        assert _snapshot(surface) == before and recorder.calls == []


class TestExport:
    """The running system as a wiring file."""

    def test_export_lints_clean_and_plans_the_same(self, served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
        """GET /api/export: lint finds no error, the plan is byte-identical."""
        surface, _ = served
        status, text = call("GET", surface.url + "/api/export")
        assert status == 200
        path = tmp_path / "exported.yaml"
        path.write_text(text)
        assert lint_file(path).ok, lint_file(path).to_dict()
        original = build_plan(_wiring_path(surface))
        assert build_plan(path).to_json() == original.to_json()
        assert yaml.safe_load(text)["system"] == "t"


def _wiring_path(surface: Surface) -> Path:
    return surface.run_dir.parent / "system.yaml"


class TestStream:
    """The live event stream (SSE)."""

    def test_stream_sends_status_then_changes(self, tmp_path: Path) -> None:
        """The first event is the status; a move is pushed within a second."""
        state = booted(plan_of(tmp_path))
        with Surface(state) as surface:
            host, port = surface.address
            sock = socket.create_connection((host, port), timeout=5)
            sock.sendall(b"GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            first = _read_event(sock)
            assert first["system"]["state"] == "running"
            t0 = time.monotonic()
            threading.Timer(0.1, lambda: state.server_to("b", "stopped", "test")).start()
            while True:
                update = _read_event(sock)
                if any(e["subject"] == "b" and e["to"] == "stopped" for e in update["events"]):
                    break
            assert time.monotonic() - t0 < 1.5
            assert {s["name"]: s["state"] for s in update["servers"]}["b"] == "stopped"
            # Another request is answered while the stream is open (threaded server).
            assert call("GET", surface.url + "/api/system")[0] == 200
            sock.close()

    def test_stop_ends_open_streams(self, tmp_path: Path) -> None:
        """Stopping the surface closes an open stream promptly."""
        surface = Surface(SystemState.from_plan(plan_of(tmp_path))).start()
        sock = socket.create_connection(surface.address, timeout=5)
        sock.sendall(b"GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        _read_event(sock)
        t0 = time.monotonic()
        surface.stop()
        while sock.recv(65536):
            pass
        assert time.monotonic() - t0 < 3
        sock.close()


def _read_event(sock: socket.socket, _buf: dict[int, bytes] = {}) -> dict[str, Any]:  # noqa: B006
    buf = _buf.get(id(sock), b"")
    while b"\n\n" not in buf or b"data: " not in buf.split(b"\n\n")[0]:
        if b"\n\n" in buf and b"data: " not in buf.split(b"\n\n")[0]:
            buf = buf.split(b"\n\n", 1)[1]
            continue
        chunk = sock.recv(65536)
        assert chunk, "stream closed"
        buf += chunk
    event, rest = buf.split(b"\n\n", 1)
    _buf[id(sock)] = rest
    data = next(line[6:] for line in event.split(b"\n") if line.startswith(b"data: "))
    return json.loads(data)


_TYPES = {"object": dict, "array": list, "string": str, "integer": int, "number": (int, float),
          "boolean": bool, "null": type(None)}


def _conforms(value: Any, schema: dict[str, Any], defs: dict[str, Any], where: str) -> None:
    """A small JSON Schema check: $ref, type (or list), enum, required, properties, items."""
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[1]]
    kinds = schema.get("type")
    if kinds is not None:
        kinds = kinds if isinstance(kinds, list) else [kinds]
        ok = any(isinstance(value, _TYPES[k]) and not (k in ("integer", "number") and
                                                        isinstance(value, bool))
                 for k in kinds)
        assert ok, f"{where}: {value!r} is not {kinds}"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if isinstance(value, dict):
        for key in schema.get("required", []):
            assert key in value, f"{where}: missing {key!r}"
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                _conforms(value[key], sub, defs, f"{where}.{key}")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, item in value.items():
                _conforms(item, extra, defs, f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            _conforms(item, schema["items"], defs, f"{where}[{i}]")
