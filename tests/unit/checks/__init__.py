"""Unit tests of ``smartops_nb.checks``: each runbook's ``diagnose`` rule as a table, no services."""
from __future__ import annotations

from typing import Any, Callable

from smartops_nb.findings import Finding


def at(step: Any, finding: Finding) -> Finding:
    """``finding`` as the notebook cell of ``step`` records it (``run.step(step, ...)``)."""
    finding.check = str(step)
    return finding


def failed(step: Any) -> Finding:
    """A step that raised: :meth:`Run.step` records it as an ``error`` finding."""
    return Finding("error", "ConnectionError: refused", {"error": "ConnectionError: refused"}, str(step))



def assert_diagnosis(rule: Callable, found: list[Finding], params: Any, causes: list[str], says: str) -> None:
    """``rule`` decides exactly ``causes`` from ``found``, and its summary says ``says``."""
    d = rule(found, params)
    assert d.causes == causes, d.summary
    assert says in d.summary
