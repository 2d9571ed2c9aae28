"""Scenario tests: real services, real faults. Every test here carries the ``scenario`` marker
(``make test-fast`` runs tests/unit only; ``make test`` runs both)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import WarmKernels

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session", autouse=True)
def warm_kernels():
    """Runbook runs in scenario tests go through a warm kernel pool, as `smartops serve` runs them
    (the tests of cold runs themselves ask ``run_runbook(..., cold=True)`` or use the CLI)."""
    WarmKernels.start(size=2)
    yield
    WarmKernels.stop()


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.scenario)
