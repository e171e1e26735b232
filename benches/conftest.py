"""Shared settings for the pytest-benchmark suites in benches/.

Run them with ``pytest benches/`` (they are outside ``testpaths`` on purpose: numbers,
not pass/fail). Every suite records the machine it ran on in ``extra_info``.
"""

from __future__ import annotations

import pytest

from pykernel.bench._report import machine_info


@pytest.fixture(scope="session")
def machine() -> dict[str, object]:
    """CPU model, cores, kernel and Python of this run (stored with each benchmark)."""
    return machine_info()


@pytest.fixture
def record_machine(benchmark, machine):  # type: ignore[no-untyped-def]
    """A benchmark fixture that also stores the machine in its extra_info."""
    benchmark.extra_info["machine"] = machine
    return benchmark
