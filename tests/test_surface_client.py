"""The control-surface client refuses bad URLs and non-surface answers with typed errors.

Real sockets on loopback: a closed port, a TCP server that speaks no HTTP, and an HTTP
server that answers what no control surface would.
"""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control.surface._client import SurfaceClient, SurfaceUnreachable
from control.surface._errors import SurfaceError


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port bound but not listening: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def _http_server(status: int, ctype: str, body: bytes) -> Callable[[], Iterator[str]]:
    """A fixture factory: an HTTP server on loopback answering every GET the same way."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    def fixture() -> Iterator[str]:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join()

    return fixture


garbage_json = pytest.fixture(_http_server(200, "application/json", b"{not json"))
bad_utf8_text = pytest.fixture(_http_server(200, "text/plain", b"\xff\xfe\xd0"))
string_error = pytest.fixture(_http_server(500, "application/json", b'{"error": "boom"}'))


@pytest.fixture
def not_http() -> Iterator[str]:
    """A TCP server on loopback that answers every connection with a line that is not HTTP."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(4096)
                conn.sendall(b"SSH-2.0-not-a-surface\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()
        thread.join(timeout=5)


class TestUrlValidation:
    """SurfaceClient checks its URL when built, before any request."""

    @pytest.mark.parametrize("url", ["not-a-url", "http://[::1", "ftp://127.0.0.1/", "http://",
                                     "http://127.0.0.1:99999", "http://127.0.0.1:port", "",
                                     "127.0.0.1:8080"])
    def test_malformed_url_is_refused(self, url: str) -> None:
        """A URL without http(s), a host or a valid port is SurfaceUnreachable on `url`."""
        with pytest.raises(SurfaceUnreachable, match="surface URL") as info:
            SurfaceClient(url)
        assert info.value.field == "url"
        assert repr(url) in str(info.value)

    @pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "https://kernel.example/",
                                     "http://[::1]:8080"])
    def test_good_url_is_kept(self, url: str) -> None:
        """A well-formed http(s) URL is accepted as given (less a trailing slash)."""
        assert SurfaceClient(url).url == url.rstrip("/")

    def test_locate_checks_an_explicit_url(self) -> None:
        """`--url` given to locate() is checked the same way."""
        with pytest.raises(SurfaceUnreachable, match="is malformed"):
            SurfaceClient.locate(url="http://[::1")

    @settings(max_examples=300, deadline=None)
    @given(url=st.text(max_size=40))
    def test_any_text_is_a_client_or_a_typed_error(self, url: str) -> None:
        """Any text as a URL builds a client or raises SurfaceUnreachable, nothing else."""
        try:
            SurfaceClient(url)
        except SurfaceUnreachable as exc:
            assert exc.field == "url"


class TestNonSurfaceAnswers:
    """Whatever answers at the URL, a request ends in a value or a typed error."""

    def test_closed_port(self, closed_port: int) -> None:
        """Nothing listening: SurfaceUnreachable naming the URL."""
        with pytest.raises(SurfaceUnreachable, match=f"127.0.0.1:{closed_port}"):
            SurfaceClient(f"http://127.0.0.1:{closed_port}", timeout=5).request("GET", "/")

    def test_a_server_that_speaks_no_http(self, not_http: str) -> None:
        """A non-HTTP answer (a bad status line) is SurfaceUnreachable, not an HTTPException."""
        with pytest.raises(SurfaceUnreachable, match="no control surface at"):
            SurfaceClient(not_http, timeout=5).request("GET", "/api/system")

    def test_json_that_is_not_json(self, garbage_json: str) -> None:
        """application/json that does not parse is SurfaceUnreachable naming the request."""
        with pytest.raises(SurfaceUnreachable, match=r"GET /api/system is not valid"):
            SurfaceClient(garbage_json, timeout=5).request("GET", "/api/system")

    def test_text_that_is_not_utf8(self, bad_utf8_text: str) -> None:
        """A text answer that is not UTF-8 is SurfaceUnreachable, not UnicodeDecodeError."""
        with pytest.raises(SurfaceUnreachable, match="not valid text/plain"):
            SurfaceClient(bad_utf8_text, timeout=5).request("GET", "/hmi")

    def test_an_error_body_of_the_wrong_shape(self, string_error: str) -> None:
        """A 500 whose "error" is a string, not an object, is SurfaceError with the status."""
        with pytest.raises(SurfaceError, match="500") as info:
            SurfaceClient(string_error, timeout=5).request("GET", "/api/system")
        assert info.value.status == 500

    @settings(max_examples=60, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(path=st.text(max_size=30))
    def test_any_path_is_a_typed_error(self, closed_port: int, path: str) -> None:
        """Any text after the host (control characters included) fails typed, on loopback."""
        client = SurfaceClient(f"http://127.0.0.1:{closed_port}", timeout=5)
        with pytest.raises(SurfaceUnreachable):
            client.request("GET", "/" + path)
