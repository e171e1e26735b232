"""State files in the run directory, so CLI verbs can show what a running agent knows.

Each file is one small JSON document, replaced atomically (write a temp file in the same
directory, fsync, rename), so a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from discovery._errors import StateFileError

RUN_DIR_ENV = "PYKERNEL_RUN_DIR"
NEIGHBORS_FILE = "discovery-neighbors.json"
CANDIDATES_FILE = "discovery-candidates.json"
STATE_FORMAT = 1


def default_run_dir() -> Path:
    """Return the run directory where discovery keeps its state files.

    ``$PYKERNEL_RUN_DIR`` if set, else /run/pykernel for root, else
    ``$XDG_RUNTIME_DIR/pykernel``, else a per-user directory under the temp dir.
    """
    env = os.environ.get(RUN_DIR_ENV)
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/run/pykernel")
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "pykernel"
    return Path(tempfile.gettempdir()) / f"pykernel-{os.geteuid()}"


def write_state(path: Path, kind: str, body: dict[str, Any]) -> None:
    """Atomically replace ``path`` with ``{"format", "kind", "pid", **body}`` as JSON.

    Raises:
        StateFileError: the directory cannot be created or written.

    """
    doc = {"format": STATE_FORMAT, "kind": kind, "pid": os.getpid(), **body}
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise StateFileError(f"cannot write state file {path}: {exc.strerror}") from exc


def read_state(path: Path, kind: str) -> dict[str, Any] | None:
    """Read a state file written by :func:`write_state`; None when there is none.

    Raises:
        StateFileError: the file exists but is unreadable, not JSON, or of another kind.

    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateFileError(f"cannot read state file {path}: {exc.strerror}") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateFileError(
            f"state file {path}: not JSON (line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(doc, dict) or doc.get("kind") != kind:
        raise StateFileError(f"state file {path}: not a {kind} state file")
    if doc.get("format") != STATE_FORMAT:
        raise StateFileError(f"state file {path}: format {doc.get('format')!r} unknown")
    return doc


