"""What a queued job carries and how a worker finds its route again (no services)."""
from __future__ import annotations

import pytest
import yaml

from smartops_nb.alerts import routes as routes_mod
from smartops_nb.jobs import app as queue_app
from smartops_nb.params import ParameterError

ALERT = {"status": "firing", "labels": {"alertname": "HighAPILatency", "env": "prod", "team": "shop"},
         "annotations": {"summary": "slow"}, "startsAt": "2026-11-26T14:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
         "generatorURL": "http://prometheus/graph", "fingerprint": "f00d"}


def load(tmp_path, routes: list[dict]) -> routes_mod.Routes:
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump({"routes": routes}))
    return routes_mod.load_routes(path)


def test_a_job_keeps_only_what_routing_and_parameters_read():
    job = routes_mod.job_alert(ALERT)
    assert set(job) == {"status", "labels", "annotations", "fingerprint", "startsAt"}
    assert routes_mod.dedup_key(job) == "HighAPILatency-f00d-20261126T140000Z:firing"
    assert routes_mod.dedup_key({**job, "status": "resolved"}) == "HighAPILatency-f00d-20261126T140000Z:resolved"


def test_route_keys_name_a_route_and_find_it_again(tmp_path):
    routes = load(tmp_path, [
        {"alertname": "HighAPILatency", "runbook": "high-latency", "match": {"env": "prod"}},
        {"alertname": "HighAPILatency", "runbook": "high-latency", "match_re": {"env": "stag.*"}},
        {"alertname": "HighAPILatency", "runbook": "high-latency", "name": "latency-default",
         "from_labels": {"environment": "env"}},
    ])
    assert [r.key for r in routes.routes] == ["HighAPILatency{env=prod}", "HighAPILatency{env=~stag.*}",
                                              "latency-default"]
    assert routes.by_key("latency-default") is routes.routes[2] and routes.by_key("gone") is None
    params = routes_mod.run_parameters(routes.routes[2], routes_mod.job_alert(ALERT))
    assert params == {"environment": "prod", "incident_id": "HighAPILatency-f00d-20261126T140000Z",
                      "detected_at": "2026-11-26T14:00:00+00:00"}


def test_two_routes_with_one_key_are_refused(tmp_path):
    with pytest.raises(ParameterError, match="same key 'HighAPILatency'"):
        load(tmp_path, [{"alertname": "HighAPILatency", "runbook": "high-latency"},
                        {"alertname": "HighAPILatency", "runbook": "api-down"}])


@pytest.mark.parametrize("dsn, shown", [
    ("postgresql://ops:s3cret@db.internal:6543/queue", "ops@db.internal:6543/queue"),
    ("host=db user=ops password=s3cret dbname=q", "ops@db:5432/q"),
])
def test_messages_name_the_queue_without_its_password(dsn, shown):
    assert queue_app.safe_dsn(dsn) == shown
    assert "s3cret" not in str(queue_app.unreachable(dsn, OSError("connection refused")))
