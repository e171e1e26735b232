"""A small client of a running control surface (used by the CLI and the benchmarks).

A kernel is found by its run directory, where the surface writes ``surface.json`` (its URL)
and ``surface.token`` (0600). :func:`find_run_dir` looks where kernels put it.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from control.surface._auth import INFO_FILE, TOKEN_FILE
from control.surface._errors import SurfaceError
from pykernel.liveness import pid_alive

RUN_DIR_ENV = "PYKERNEL_RUN_DIR"
"""Environment variable naming a kernel's run directory."""


def run_dir_bases() -> list[Path]:
    """Return the directories under which kernels keep their run directories."""
    bases = [Path("/run/pykernel")]
    if os.environ.get("XDG_RUNTIME_DIR"):
        bases.append(Path(os.environ["XDG_RUNTIME_DIR"]) / "pykernel")
    return bases


class SurfaceUnreachable(SurfaceError):
    """No running control surface where one was looked for."""

    status = 0


def find_run_dir(explicit: str | None = None) -> Path:
    """Return the run directory of the one running kernel.

    Args:
        explicit: ``--run-dir`` if given; else ``$PYKERNEL_RUN_DIR``; else the single run
            directory with a live ``surface.json`` under :func:`run_dir_bases`.

    Raises:
        SurfaceUnreachable: none found, or several (name one with ``--run-dir``).

    """
    chosen = explicit or os.environ.get(RUN_DIR_ENV)
    if chosen:
        path = Path(chosen)
        if not (path / INFO_FILE).is_file():
            raise SurfaceUnreachable(f"no running control surface in {path} "
                                     f"({INFO_FILE} missing)", "run_dir")
        return path
    found = []
    for base in run_dir_bases():
        for info in sorted(base.glob(f"*/{INFO_FILE}")) + sorted(base.glob(INFO_FILE)):
            try:
                pid = int(json.loads(info.read_text())["pid"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if pid_alive(pid):
                found.append(info.parent)
    if not found:
        where = ", ".join(str(b) for b in run_dir_bases())
        raise SurfaceUnreachable(f"no running kernel found under {where}: start one with "
                                 "`pykernel up FILE`, or pass --run-dir or --url", "run_dir")
    if len(found) > 1:
        raise SurfaceUnreachable("several running kernels: pass --run-dir "
                                 f"({', '.join(map(str, found))})", "run_dir")
    return found[0]


class SurfaceClient:
    """Speaks JSON over HTTP to one control surface.

    Args:
        url: the surface's base URL.
        token: the bearer token for modifies (None: queries only).
        timeout: seconds per request.

    Raises:
        SurfaceUnreachable: ``url`` is not an ``http``/``https`` URL with a host (field
            ``url``).

    """

    def __init__(self, url: str, token: str | None = None, timeout: float = 10.0) -> None:
        self.url = _checked_url(url).rstrip("/")
        self.token = token
        self.timeout = timeout

    @classmethod
    def locate(cls, url: str | None = None, run_dir: str | None = None,
               token_file: str | None = None) -> SurfaceClient:
        """Build a client from ``--url``/``--run-dir``/``--token-file`` (any may be None).

        Raises:
            SurfaceUnreachable: no kernel found, its files cannot be read, or the URL is
                malformed.

        """
        token = None
        if url is None:
            found = find_run_dir(run_dir)
            try:
                url = json.loads((found / INFO_FILE).read_text())["url"]
            except (OSError, ValueError, KeyError) as exc:
                raise SurfaceUnreachable(f"cannot read {found / INFO_FILE}: {exc}",
                                         "run_dir") from None
            if token_file is None and (found / TOKEN_FILE).exists():
                token_file = str(found / TOKEN_FILE)
        if token_file is not None:
            try:
                token = Path(token_file).read_text().strip()
            except OSError as exc:
                raise SurfaceUnreachable(f"cannot read token file {token_file}: "
                                         f"{exc.strerror}", "token_file") from None
        assert url is not None
        return cls(url, token)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Send one request; return parsed JSON (or text for non-JSON answers).

        Raises:
            SurfaceUnreachable: nothing answers at the URL.
            SurfaceError: the surface refused (its message, field and status).

        """
        data = json.dumps(body).encode() if body is not None else None
        try:
            req = urllib.request.Request(self.url + path, data=data, method=method)
        except ValueError as exc:  # __init__ checked the URL; the path may still be bad
            raise SurfaceUnreachable(f"cannot request {self.url}{path}: {exc}", "url") from None
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token and method != "GET":
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                payload, ctype = resp.read(), resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                err = json.loads(raw)["error"]
                message, field = str(err.get("message")), str(err.get("field", ""))
            except (ValueError, KeyError, TypeError, AttributeError):  # not a surface's error
                message, field = raw.decode(errors="replace")[:200], ""
            raise SurfaceError(f"{exc.code}: {message}", field, exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SurfaceUnreachable(f"no control surface at {self.url}: {reason}",
                                     "url") from None
        except (http.client.HTTPException, ValueError) as exc:
            # Something answered, but not HTTP (BadStatusLine), or http.client refused the
            # URL (InvalidURL is a ValueError): either way no control surface is there.
            raise SurfaceUnreachable(f"no control surface at {self.url}: "
                                     f"{type(exc).__name__}: {exc}", "url") from None
        try:
            if ctype.startswith("application/json"):
                return json.loads(payload)
            return payload.decode()
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
            raise SurfaceUnreachable(f"no control surface at {self.url}: its answer to "
                                     f"{method} {path} is not valid {ctype or 'text'} "
                                     f"({exc})", "url") from None


def _checked_url(url: str) -> str:
    """Return ``url`` if it is an ``http``/``https`` URL with a host, else raise."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 -- parses the port: a bad or out-of-range one raises here
    except ValueError as exc:
        raise SurfaceUnreachable(f"surface URL {url!r} is malformed: {exc}", "url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SurfaceUnreachable(f"surface URL {url!r} is not http(s)://HOST[:PORT]",
                                 "url")
    return url
