"""Progress lines for long work: shown on a terminal, silent when piped."""

from __future__ import annotations

import sys
from typing import TextIO


class Progress:
    """Writes a single self-overwriting status line to a terminal.

    Args:
        stream: where to write; defaults to stderr. Nothing is written unless it is a TTY.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self.enabled = bool(getattr(self._stream, "isatty", lambda: False)())
        self._width = 0

    def update(self, text: str) -> None:
        """Replace the status line with ``text`` (no-op when not a terminal)."""
        if not self.enabled:
            return
        pad = max(0, self._width - len(text))
        self._stream.write("\r" + text + " " * pad)
        self._stream.flush()
        self._width = len(text)

    def done(self) -> None:
        """Clear the status line."""
        if self.enabled and self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._stream.flush()
            self._width = 0
