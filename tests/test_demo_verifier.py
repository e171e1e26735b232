"""The demo sink's verifier catches every kind of damage (so 'errors: 0' means something)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from examples.demo_servers import (
    RESULT_HEADER,
    RESULT_SIZE,
    Verifier,
    frame_data,
    transform,
)


def result(seq: int, worker: str = "worker_a", data: np.ndarray | None = None) -> bytes:
    """A result message exactly as a worker builds it."""
    buf = bytearray(RESULT_SIZE)
    RESULT_HEADER.pack_into(buf, 0, seq, worker.encode())
    payload = transform(frame_data(seq)) if data is None else data
    buf[RESULT_HEADER.size:] = payload.astype(np.float64).tobytes()
    return bytes(buf)


class TestVerifier:
    """Each fault is counted, named in first_error, and never counted as verified."""

    def test_clean_streams(self) -> None:
        """Two interleaved, complete, in-order streams verify fully."""
        v = Verifier()
        for seq in range(50):
            v.check(result(seq, "worker_a"))
            v.check(result(seq, "worker_b"))
        report = v.report(final=True)
        assert (report["received"], report["verified"], report["errors"]) == (100, 100, 0)
        assert report["workers"]["worker_b"] == {"received": 50, "next_seq": 50, "gaps": 0,
                                                 "repeats": 0, "bad": 0}

    @pytest.mark.parametrize(
        ("messages", "field", "error"),
        [
            ([result(0), result(2)], "gaps", "worker_a: expected seq 1, got 2"),
            ([result(0), result(1), result(1)], "repeats", "worker_a: seq 1 again"),
            ([result(0, data=transform(frame_data(0)) + 1e-9)], "bad",
             "worker_a: seq 0 has wrong content"),
            ([result(0, data=transform(frame_data(1)))], "bad", "seq 0 has wrong content"),
        ],
    )
    def test_fault_is_counted(self, messages: list[bytes], field: str, error: str) -> None:
        """Gaps, repeats and corrupted content are each caught and named."""
        v = Verifier()
        for msg in messages:
            v.check(msg)
        report = v.report(final=True)
        assert report["errors"] == 1 and report["workers"]["worker_a"][field] >= 1
        assert report["verified"] == len(messages) - 1
        assert error in report["first_error"]

    def test_wrong_size(self) -> None:
        """A message of the wrong length is an error, not a crash."""
        v = Verifier()
        v.check(b"short")
        assert v.report(final=True)["errors"] == 1
        assert "result of 5 bytes" in v.first_error
