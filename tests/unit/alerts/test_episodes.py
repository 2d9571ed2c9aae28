"""An alert's incident is its firing episode; its severity comes from its label (no services)."""
from __future__ import annotations

import pytest
import yaml

from smartops_nb.alerts import routes as routes_mod
from smartops_nb.params import ParameterError

ALERT = {"status": "firing", "labels": {"alertname": "PostgresConnectionsNearLimit", "severity": "P3"},
         "annotations": {}, "startsAt": "2026-12-04T16:09:52.123456789Z", "fingerprint": "a1b2c3"}


def load(tmp_path, doc: dict) -> routes_mod.Routes:
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(doc))
    return routes_mod.load_routes(path)


def test_one_incident_per_firing_episode():
    first = routes_mod.incident_id(ALERT)
    assert first == "PostgresConnectionsNearLimit-a1b2c3-20261204T160952Z"
    # regrouping, repeat_interval, an HA peer and the resolved notification keep startsAt: the same incident
    assert routes_mod.incident_id({**ALERT, "status": "resolved", "labels": {**ALERT["labels"]}}) == first
    assert routes_mod.dedup_key({**ALERT, "status": "resolved"}) == f"{first}:resolved"
    # a recurrence after resolve has a new startsAt: a new incident, linked by its alert key
    again = routes_mod.incident_id({**ALERT, "startsAt": "2026-12-04T16:13:35+00:00"})
    assert again != first and again.endswith("-20261204T161335Z")
    assert routes_mod.alert_key_of(first) == routes_mod.alert_key_of(again) == "PostgresConnectionsNearLimit-a1b2c3"
    assert routes_mod.alert_key_of("INC-42") is None
    # another time zone is the same instant
    assert routes_mod.episode_stamp("2026-12-04T17:09:52+01:00") == "20261204T160952Z"


@pytest.mark.parametrize("label, pin, mapping, expected", [
    ("P3", "", {}, "P3"),
    ("critical", "", {"critical": "P1", "warning": "P2"}, "P1"),
    ("warning", "", {"critical": "P1", "warning": "P2"}, "P2"),
    ("P3", "P1", {}, "P1"),                 # the route pins it
    ("page-me-now", "", {}, None),          # nobody mapped it: the runbook's own severity
    (None, "", {}, None),
])
def test_severity_comes_from_the_label_unless_the_route_pins_it(tmp_path, label, pin, mapping, expected):
    route = {"alertname": ALERT["labels"]["alertname"], "runbook": "db-pool-exhausted", **({"severity": pin} if pin else {})}
    routes = load(tmp_path, {"severities": mapping, "routes": [route]})
    labels = {k: v for k, v in {**ALERT["labels"], "severity": label}.items() if v is not None}
    params = routes_mod.run_parameters(routes.routes[0], {**ALERT, "labels": labels}, routes.severities)
    assert params.get("severity") == expected


@pytest.mark.parametrize("doc, message", [
    ({"severities": {"critical": "SEV1"}, "routes": []}, "severity must be one of"),
    ({"severities": ["P1"], "routes": []}, "severities must be a mapping"),
    ({"routes": [{"alertname": "A", "runbook": "api-down", "severity": "high"}]}, "severity must be one of"),
    ({"routes": [{"alertname": "A", "runbook": "api-down", "recheck_after": "soon"}]}, "recheck_after must be"),
])
def test_bad_severities_and_durations_are_one_line_errors(tmp_path, doc, message):
    with pytest.raises(ParameterError, match=message):
        load(tmp_path, doc)


def test_recheck_after_reads_alertmanager_durations(tmp_path):
    routes = load(tmp_path, {"recheck_after": "1h", "routes": [
        {"alertname": "A", "runbook": "api-down", "recheck_after": "30m"},
        {"alertname": "B", "runbook": "api-down"},
        {"alertname": "C", "runbook": "api-down", "recheck_after": 0}]})
    assert [r.recheck_after for r in routes.routes] == [1800.0, 3600.0, 0.0]
