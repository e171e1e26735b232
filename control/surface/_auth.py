"""The modify token: created at start, stored owner-only in the run directory."""

from __future__ import annotations

import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

TOKEN_FILE = "surface.token"
"""Name of the token file in the run directory (mode 0600)."""
INFO_FILE = "surface.json"
"""Name of the file that tells clients where the surface listens (url, pid, system)."""


def _write(path: Path, text: str, mode: int) -> None:
    """Write ``text`` atomically with ``mode`` from the first byte (no readable window)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed or the file existed
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def create_token(run_dir: Path) -> tuple[str, Path]:
    """Create a fresh random token and store it as ``run_dir/surface.token`` (0600).

    Returns:
        the token and the file it was written to.

    """
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(32)
    path = run_dir / TOKEN_FILE
    _write(path, token + "\n", 0o600)
    return token, path


def write_info(run_dir: Path, info: dict[str, Any]) -> Path:
    """Write ``run_dir/surface.json`` (url, pid, system) for clients to find the surface."""
    path = run_dir / INFO_FILE
    _write(path, json.dumps(info, sort_keys=True) + "\n", 0o644)
    return path


def token_matches(header: str | None, token: str) -> bool:
    """Return whether an ``Authorization`` header carries ``Bearer <token>`` (constant time)."""
    if not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())
