"""Shared test rules.

Tests that need root or an external tool skip only with a stated reason when it is truly
absent. Under ``CI=true`` a skip is a failure: CI installs everything, so it must run all.
"""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_root() -> None:
    """Skip (or, in CI, fail) unless running as root."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network/PID namespaces, raw sockets)")


def require_tool(name: str) -> str:
    """Return the path of executable ``name`` or skip (fail in CI) with the reason."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"needs the '{name}' executable (installed by scripts/test.sh)")
    return path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    """Turn skips into failures under CI=true: CI must never skip."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which must run every test: {report.longrepr}"
