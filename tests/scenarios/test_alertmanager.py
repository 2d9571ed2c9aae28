"""Alertmanager as it really behaves, against the Debian binaries: two clustered Alertmanagers
(an HA pair, at-least-once delivery) both sending to one `smartops serve`, a group that a second
alert joins (Alertmanager re-sends the first), severity from the alert's label, a recurrence after
resolve, and a P1 the runbook could not diagnose (the API down, no container engine reachable).

The runs are `api-down` against an API and an engine that do not exist: each is quick and ends
*inconclusive*, which is what the notifications must say (loopback Slack and PagerDuty receivers).
Alerts are posted to both Alertmanagers' ``/api/v2/alerts`` with one ``startsAt``, as Prometheus does.
"""
from __future__ import annotations

import datetime as dt
import json
import urllib.request

import pytest
import yaml

from smartops_nb.records.entries import IndexMissing
from smartops_nb.reports import incident
from smartops_nb.waiting import until
from smartops_nb.records.archive import open_archive
from tests.conftest import REPO, free_port, require
from tests.fixtures.monitoring import (
    ALERTMANAGER,
    alertmanager_config,
    post_to_alertmanager,
    start_alertmanager,
    start_serve,
)
from tests.fixtures.receivers import Receiver

TOKEN = "am-" + "y" * 29
WAIT_S = 120


class Stack:
    """serve (in-process, the shipped routes) behind two clustered Alertmanagers, and the receivers."""

    def __init__(self, folder):
        self.archive = folder / "incidents"
        self.slack, self.pagerduty = Receiver(), Receiver()
        self.procs = []
        dead = folder / "dead.yaml"   # an API and a container engine that are not there
        dead.write_text(yaml.safe_dump({
            "environment": "test", "api_url": f"http://127.0.0.1:{free_port()}", "health_timeout_s": 1,
            "docker_host": f"unix://{folder}/no-engine.sock", "postgres_dsn": f"postgresql://x@127.0.0.1:{free_port()}/x",
            "redis_url": f"redis://127.0.0.1:{free_port()}/0",
            "notify": {"slack": {"webhook_url": self.slack.url + "/slack"},
                       "pagerduty": {"routing_key": "R" * 32, "url": self.pagerduty.url + "/v2/enqueue"}}}))
        token_file = folder / "serve.token"
        token_file.write_text(TOKEN)
        token_file.chmod(0o600)
        try:
            self.serve = start_serve(folder / "serve", REPO / "parameters" / "routes.yaml", self.archive, TOKEN,
                                     files=[dead], extra=["--cell-timeout", "60"])
            self.procs.append(self.serve)
            cfg = alertmanager_config(self.serve.url + "/alerts", token_file)
            cfg["route"].update(group_wait="1s", group_interval="2s")
            gossip = [free_port(), free_port()]
            self.ams = []
            for i, (mine, peer) in enumerate((gossip, gossip[::-1])):
                self.ams.append(start_alertmanager(folder / f"am{i}", cfg, cluster=(mine, [peer])))
                self.procs.append(self.ams[-1])
        except BaseException:
            self.close()
            raise

    def fire(self, starts_at: str, ends_at: str | None = None, **labels) -> None:
        alert = {"labels": {"alertname": "APIDown", "runbook": "api-down", "instance": "api:8000", "env": "test",
                            **labels}, "annotations": {"summary": "the API is down"}, "startsAt": starts_at}
        if ends_at:
            alert["endsAt"] = ends_at
        for am in self.ams:  # Prometheus sends every alert to every Alertmanager it knows
            post_to_alertmanager(am.url, [alert])

    def rows(self) -> list[dict]:
        try:
            return open_archive(self.archive).list(limit=0)
        except IndexMissing:
            return []

    def received(self, incident_id: str) -> int:
        """How many notifications of this incident serve was handed (its log line per alert)."""
        return self.serve.log.read_text().count(f"(incident {incident_id})")

    def idle(self) -> bool:
        with urllib.request.urlopen(self.serve.url + "/healthz", timeout=5) as r:
            h = json.loads(r.read())
        return h["queued"] == 0 and h["running"] == 0

    def why(self) -> str:
        return f"--- serve log:\n{self.serve.tail(30)}\n--- am0:\n{self.ams[0].tail(8)}\n--- am1:\n{self.ams[1].tail(8)}"

    def close(self) -> None:
        for p in reversed(self.procs):
            p.stop()
        self.slack.close()
        self.pagerduty.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    require("alertmanager", bool(ALERTMANAGER), "apt-get install prometheus-alertmanager")
    s = Stack(tmp_path_factory.mktemp("am-stack"))
    yield s
    s.close()


def _at(seconds_ago: float = 0) -> str:
    return (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=seconds_ago)).isoformat().replace("+00:00", "Z")


def _incidents(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["incident_id"], []).append(r)
    return out


def test_an_ha_pair_and_a_regrouped_alert_give_one_run_per_alert_with_the_labels_severity(stack):
    first_at = _at(5)
    stack.fire(first_at, shard="a", severity="P3")
    rows = until(stack.rows, WAIT_S, done=lambda rs: len(rs) >= 1)
    assert rows, f"no record within {WAIT_S}s\n{stack.why()}"
    [first] = {r["incident_id"] for r in rows}
    assert first.startswith("APIDown-") and first.endswith(
        dt.datetime.fromisoformat(first_at.replace("Z", "+00:00")).strftime("-%Y%m%dT%H%M%SZ"))

    # a second alert joins the group: both Alertmanagers send the group again, the first alert in it
    stack.fire(_at(), shard="b", severity="critical")
    until(lambda: len(stack.rows()) >= 2 and stack.received(first) >= 3 and stack.idle(), WAIT_S)
    by_incident = _incidents(stack.rows())
    assert stack.received(first) >= 3, f"the regrouped notification never came\n{stack.why()}"
    assert sorted(len(v) for v in by_incident.values()) == [1, 1], (by_incident, stack.why())
    assert "dedup: incident " + first in stack.serve.log.read_text()

    # severity from the label: P3 (4-hour target), and `critical` mapped to P1 by the shipped routes
    second = next(i for i in by_incident if i != first)
    p3, p1 = incident.show(open_archive(stack.archive), first), incident.show(open_archive(stack.archive), second)
    assert (p3["severity"], p3["response"]["target_minutes"]) == ("P3", 240)
    assert (p1["severity"], p1["response"]["target_minutes"]) == ("P1", 15)

    # inconclusive firing runs tell someone: Slack for both, PagerDuty for the P1 (one trigger)
    slack = until(lambda: [m["body"]["text"] for m in stack.slack.received], 30, done=lambda m: len(m) >= 2)
    assert len(slack) == 2 and all("INCONCLUSIVE" in t and "could not check" in t for t in slack), slack
    triggers = [m["body"] for m in stack.pagerduty.received if m["body"]["event_action"] == "trigger"]
    assert [t["dedup_key"] for t in triggers] == [f"smartops:{second}"], triggers
    assert "could not check" in triggers[0]["payload"]["custom_details"]["unchecked"]


def test_a_recurrence_after_resolve_is_a_new_incident_linked_to_the_first(stack):
    labels = {"shard": "r", "severity": "P2"}
    before = {r["incident_id"] for r in stack.rows()}
    started = _at(3)
    stack.fire(started, **labels)
    new = lambda: {r["incident_id"] for r in stack.rows()} - before  # noqa: E731
    [first] = until(new, WAIT_S) or [None]
    assert first, f"no record within {WAIT_S}s\n{stack.why()}"
    stack.fire(started, ends_at=_at(), **labels)                      # resolved: a confirming run
    until(lambda: len([r for r in stack.rows() if r["incident_id"] == first]) >= 2 and stack.idle(), WAIT_S)
    assert len([r for r in stack.rows() if r["incident_id"] == first]) == 2, stack.why()

    again = _at()
    stack.fire(again, **labels)                                       # the same alert fires again
    later = until(lambda: new() - {first}, WAIT_S)
    assert len(later) == 1, f"the recurrence made no new incident\n{stack.why()}"
    [second] = later
    one, two = incident.show(open_archive(stack.archive), first), incident.show(open_archive(stack.archive), second)
    assert (one["recurrence_of"], one["recurred_as"]) == (None, second)
    assert two["recurrence_of"] == first and f"recurrence of {first}" in incident.text(two)
    # escalations count from the recurrence's own start, not the first occurrence
    assert two["detected_at"][:19] == again[:19] and two["response"]["detected_at"][:19] == again[:19]
