"""The HTTP server carrying the control surface: API routes, the live stream, the HMI files.

A :class:`http.server.ThreadingHTTPServer` with daemon threads: the live stream (Server-Sent
Events) holds its connection open, so one thread per connection keeps every other request
answered (a single-threaded server would block behind the first open stream).
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from control.surface._api import MAX_BODY, Api, Request, Response
from control.surface._errors import SurfaceError

STATIC = {
    "/": ("hmi.html", "text/html; charset=utf-8"),
    "/hmi.html": ("hmi.html", "text/html; charset=utf-8"),
    "/hmi.js": ("hmi.js", "text/javascript; charset=utf-8"),
    "/hmi.css": ("hmi.css", "text/css; charset=utf-8"),
}
"""Paths of the HMI page and its files, served from this package."""

KEEPALIVE = 15.0
"""Seconds between comment lines on an idle event stream (keeps proxies from closing it)."""
COALESCE = 0.05
"""Seconds the stream waits after a change so a burst of changes goes out as one update."""

_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    api: Api
    stopping: threading.Event
    loopback_only: bool


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "pykernel-surface/1"

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: the kernel's log is the event log, not an access log."""

    def _send(self, resp: Response, extra: dict[str, str] | None = None) -> None:
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(resp.body)

    def _host_ok(self) -> bool:
        """Refuse foreign Host headers on a loopback bind (DNS-rebinding protection)."""
        if not self.server.loopback_only:
            return True
        host = (self.headers.get("Host") or "").strip()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name.lower() in _LOOPBACK_NAMES

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self._send(Response.error(SurfaceError(
                "chunked bodies are not accepted: send Content-Length", "body", 411)))
            return None
        raw = self.headers.get("Content-Length", "0") or "0"
        try:
            length = int(raw)
            if length < 0:
                raise ValueError(raw)
        except ValueError:
            self.close_connection = True
            self._send(Response.error(SurfaceError(
                f"bad Content-Length {raw!r}", "body", 400)))
            return None
        if length > MAX_BODY:
            self.close_connection = True
            self._send(Response.error(SurfaceError(
                f"body larger than {MAX_BODY} bytes", "body", 413)))
            return None
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        if not self._host_ok():
            self.close_connection = True
            self._send(Response.error(SurfaceError(
                f"Host {self.headers.get('Host')!r} is not this loopback surface", "host", 403)))
            return
        body = self._read_body()
        if body is None:
            return
        if self.command in ("GET", "HEAD") and split.path in STATIC and not body:
            name, media = STATIC[split.path]
            data = resources.files("control.surface").joinpath(name).read_bytes()
            self._send(Response(200, data, media))
            return
        if self.command == "GET" and split.path == "/api/stream" and not body:
            self._stream()
            return
        req = Request(
            method=self.command, path=split.path, query=dict(parse_qsl(split.query)),
            headers={k.lower(): v for k, v in self.headers.items()}, body=body,
        )
        resp = self.server.api.handle(req)
        extra = {"WWW-Authenticate": "Bearer"} if resp.status == 401 else None
        self._send(resp, extra)

    def _stream(self) -> None:
        """Send ``status`` events: one now, then one per change (coalesced), until closed."""
        api, stopping = self.server.api, self.server.stopping
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        seq = 0
        try:
            raw = self.headers.get("Last-Event-ID", "0")
            seq = int(raw) if raw.isdigit() else 0
        except ValueError:
            seq = 0
        revision = -1
        try:
            while not stopping.is_set():
                if revision != api.state.revision:
                    revision = api.state.revision
                    payload = api.stream_payload(seq)
                    if payload["events"]:
                        seq = payload["events"][-1]["seq"]
                    data = json.dumps(payload, sort_keys=True, separators=(",", ":"))
                    self.wfile.write(f"id: {seq}\nevent: status\ndata: {data}\n\n".encode())
                    self.wfile.flush()
                new = api.state.wait_change(revision, KEEPALIVE)
                if new == revision:
                    self.wfile.write(b": keepalive\n\n")
                    self.wfile.flush()
                elif not stopping.wait(COALESCE):
                    continue
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            return

    do_GET = _dispatch
    do_HEAD = _dispatch
    do_POST = _dispatch
    do_DELETE = _dispatch
    do_PUT = _dispatch
    do_PATCH = _dispatch


class _Server6(_Server):
    address_family = socket.AF_INET6


def make_server(api: Api, host: str, port: int) -> _Server:
    """Bind a threading HTTP server for ``api`` on ``host:port`` (port 0: any free port)."""
    server = (_Server6 if ":" in host else _Server)((host, port), _Handler)
    server.api = api
    server.stopping = threading.Event()
    server.loopback_only = _is_loopback(host)
    return server
