"""The incident review: pure functions on index rows, and the notebook on an archive of real sandbox runs."""
from __future__ import annotations

import datetime as dt
import math

from smartops_nb.params import iso
from smartops_nb.reports import review

T0 = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.timezone.utc)  # a Monday


def _row(name, incident, *, runbook="db-pool-exhausted", severity="P1", minutes=0, took=2, detected=0,
         confirmed=False, causes=(), actions=(), status="completed"):
    start = T0 + dt.timedelta(minutes=minutes)
    return {"name": name, "runbook": runbook, "severity": severity, "environment": "test", "incident_id": incident,
            "status": status, "confirmed": confirmed, "causes": list(causes),
            "detected_at": iso(T0 + dt.timedelta(minutes=detected)), "started_at": iso(start),
            "finished_at": iso(start + dt.timedelta(minutes=took)), "mode": "investigate",
            "actions_executed": list(actions)}


ROWS = [
    # INC-A: diagnosed 2 min after detection, mitigated, confirmed healthy at 10 min: within P1's 15 min
    _row("a1", "INC-A", confirmed=True, causes=["idle-connection-leak"]),
    _row("a2", "INC-A", minutes=4, confirmed=True, causes=["idle-connection-leak"],
         actions=["terminate-idle-connections on smartamazon"]),
    _row("a3", "INC-A", minutes=8),
    # INC-B: detected 40 min before the run: diagnosis misses P1's target; never resolved
    _row("b1", "INC-B", minutes=60 * 24 * 7, detected=60 * 24 * 7 - 40, confirmed=True,
         causes=["connections-near-limit", "idle-connection-leak"]),
    # INC-C: a P2 false alarm
    _row("c1", "INC-C", runbook="redis-memory-full", severity="P2", minutes=30),
]


def test_incidents_times_targets_and_postmortems():
    inc = review.incidents(review.frame(ROWS), postmortems={"INC-A"}).set_index("incident_id")
    assert inc.loc["INC-A", "time_to_diagnosis_min"] == 2 and inc.loc["INC-A", "time_to_resolution_min"] == 10
    assert inc.loc["INC-A", "diagnosis_met"] and inc.loc["INC-A", "resolution_met"]
    assert inc.loc["INC-B", "time_to_diagnosis_min"] == 42 and not inc.loc["INC-B", "diagnosis_met"]
    assert math.isnan(inc.loc["INC-B", "time_to_resolution_min"]) and not inc.loc["INC-B", "resolution_met"]
    assert not inc.loc["INC-C", "confirmed"] and inc.loc["INC-C", "diagnosis_met"] is None
    assert list(review.lacking_postmortem(inc.reset_index())["incident_id"]) == ["INC-B"]


def test_tables_per_week_severity_causes_mitigations():
    df = review.frame(ROWS)
    inc = review.incidents(df)
    weeks = review.per_runbook_week(inc)
    assert weeks.loc["db-pool-exhausted"].to_dict() == {"2026-W48": 1, "2026-W49": 1}
    assert weeks.loc["redis-memory-full"].sum() == 1
    sev = review.response_by_severity(inc).set_index("severity")
    assert list(sev.index) == ["P1"]  # the P2 false alarm has no diagnosis to time
    assert sev.loc["P1", "incidents"] == 2 and sev.loc["P1", "diagnosed_within_target"] == 0.5
    assert sev.loc["P1", "resolved_within_target"] == 0.5 and sev.loc["P1", "unresolved"] == 1
    assert review.top_causes(inc).set_index("cause")["incidents"].to_dict() == {
        "idle-connection-leak": 2, "connections-near-limit": 1}
    assert review.mitigations_run(df).to_dict("records") == [{"action": "terminate-idle-connections", "times": 1}]
    assert review.headline(inc) == {"incidents": 3, "confirmed": 2, "false_alarms": 1, "diagnosed_within_target": 0.5,
                                    "resolved_within_target": 0.5, "lacking_postmortem": 2}


def test_between_filters_on_detection_time():
    df = review.frame(ROWS)
    assert set(review.between(df, since=iso(T0 + dt.timedelta(days=1)))["incident_id"]) == {"INC-B"}
    assert set(review.between(df, until=iso(T0 + dt.timedelta(days=1)))["incident_id"]) == {"INC-A", "INC-C"}


def test_empty_archive_gives_empty_tables(tmp_path):
    inc = review.incidents(review.load_rows(tmp_path))
    assert inc.empty and review.per_runbook_week(inc).empty and review.lacking_postmortem(inc).empty
    assert review.headline(inc)["incidents"] == 0

