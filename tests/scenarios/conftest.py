"""Scenario tests: real services, real faults. Every test here carries the ``scenario`` marker
(``make test-fast`` runs tests/unit only; ``make test`` runs both)."""
from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.scenario)
