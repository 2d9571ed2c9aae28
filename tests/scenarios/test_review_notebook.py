"""The incident review: pure functions on index rows, and the notebook on an archive of real sandbox runs."""
from __future__ import annotations

import datetime as dt
import io

import nbformat
import pandas as pd
import pytest

from smartops_nb.params import iso, utcnow
from smartops_nb.reports import postmortem, review
from smartops_nb.records.archive import open_archive
from tests.conftest import REPO, run_runbook
from tests.fixtures.leak import LEAK_IDLE_MINUTES, inject_leak


# -- the notebook on an archive of real runs -----------------------------------------------------------
def _tables(nb) -> dict[str, pd.DataFrame]:
    """The notebook's show_table outputs by title, read back from their text form."""
    out = {}
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            text = o.get("data", {}).get("text/plain", "")
            if "text/html" in o.get("data", {}) and "<h4>" in o["data"]["text/html"] and "\n" in text:
                title, body = text.split("\n", 1)
                out[title] = pd.read_fwf(io.StringIO(body)) if "(no rows)" not in o["data"]["text/html"] else None
    return out


@pytest.fixture(scope="module")
def scenario_archive(sandbox, tmp_path_factory):
    """Records of real runs: a leak investigated, mitigated and confirmed gone (one incident, with a
    post-mortem); a second leak detected 40 minutes before its run (misses P1's 15 min); a healthy
    Redis (a false alarm)."""
    folder = tmp_path_factory.mktemp("review") / "incidents"
    params = {**sandbox.params(), "api_log_path": str(sandbox.api_log), "idle_minutes": LEAK_IDLE_MINUTES}
    sandbox.heal()
    try:
        inject_leak(sandbox)
        now = utcnow()
        first = [run_runbook("db-pool-exhausted", folder, {**params, "incident_id": "INC-1",
                                                           "detected_at": iso(now - dt.timedelta(minutes=1))}),
                 run_runbook("db-pool-exhausted", folder, {**params, "incident_id": "INC-1", "mode": "mitigate",
                                                           "approved_actions": ["terminate-idle-connections"]})]
        sandbox.heal()
        first.append(run_runbook("db-pool-exhausted", folder, {**params, "incident_id": "INC-1"}))
        inject_leak(sandbox)
        run_runbook("db-pool-exhausted", folder, {**params, "incident_id": "INC-2",
                                                  "detected_at": iso(utcnow() - dt.timedelta(minutes=40))})
        sandbox.heal()
        run_runbook("redis-memory-full", folder, {**params, "incident_id": "INC-3"})
    finally:
        sandbox.heal()
    postmortem.write([r.path for r in first], folder / review.POSTMORTEM_FOLDER / "postmortem-INC-1.md")
    return folder


def test_review_notebook_figures_match_the_index(scenario_archive, tmp_path):
    import papermill

    rows = open_archive(scenario_archive).list(limit=0)
    assert len(rows) == 5
    out = tmp_path / "review.ipynb"
    papermill.execute_notebook(str(REPO / "notebooks" / "incident_review.ipynb"), str(out),
                               parameters={"archive": str(scenario_archive)}, progress_bar=False, kernel_name="python3")
    nb = nbformat.read(out, as_version=4)
    tables = _tables(nb)

    # incidents per runbook: distinct incident ids per runbook in the index
    expected = pd.DataFrame(rows).groupby("runbook")["incident_id"].nunique().to_dict()
    per_week = tables["Incidents per runbook and ISO week"].set_index("runbook")
    assert per_week.sum(axis=1).to_dict() == expected == {"db-pool-exhausted": 2, "redis-memory-full": 1}

    # share within target: INC-1 diagnosed and resolved within P1's 15 min, INC-2 diagnosed 40+ min late
    head = tables[next(t for t in tables if t.startswith("Archive "))].iloc[0]
    assert (head["incidents"], head["confirmed"], head["false_alarms"]) == (3, 2, 1)
    assert head["diagnosed_within_target"] == 0.5 and head["resolved_within_target"] == 0.5
    p1 = tables["Confirmed incidents by severity (times in minutes)"].set_index("severity").loc["P1"]
    assert p1["incidents"] == 2 and p1["diagnosed_within_target"] == 0.5 and p1["unresolved"] == 1

    causes = tables["Cause codes by incidents that confirmed them"].set_index("cause")["incidents"].to_dict()
    assert causes == {"idle-connection-leak": 2, "connections-near-limit": 2}
    mitigations = tables["Mitigations executed"].set_index("action")["times"].to_dict()
    assert mitigations == {"terminate-idle-connections": sum(len(r["actions_executed"]) for r in rows)} == {
        "terminate-idle-connections": 1}
    lacking = tables["Confirmed incidents without a post-mortem"]
    assert list(lacking["incident_id"]) == ["INC-2"]

    charts = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(charts) == 4

