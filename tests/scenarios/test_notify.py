"""Notifications against real HTTP receivers on loopback, after real runs on the sandbox."""
from __future__ import annotations

import time

import pytest
import yaml

from smartops_nb.alerts import notify
from smartops_nb.records.archive import open_archive
from tests.conftest import run_runbook
from tests.fixtures.leak import LEAK_IDLE_MINUTES, inject_leak
from tests.fixtures.receivers import receivers  # noqa: F401 - a fixture


def _notify_file(tmp_path, **section) -> str:
    path = tmp_path / "notify.yaml"
    path.write_text(yaml.safe_dump({"notify": section}))
    return str(path)


def _params(sandbox_params):
    return {**sandbox_params, "idle_minutes": LEAK_IDLE_MINUTES, "incident_id": "INC-notify-1"}


@pytest.mark.timeout(240)
def test_slack_and_pagerduty_trigger_then_resolve(tmp_path, receivers, healthy_sandbox, sandbox_params, archive,
                                                 monkeypatch):
    slack, pd = receivers(), receivers()
    monkeypatch.setenv("TEST_PD_KEY", "R0UTINGKEY")
    files = (_notify_file(tmp_path, timeout_s=5, slack={"webhook_url": slack.url + "/services/T0/B0/XYZ"},
                          pagerduty={"routing_key": "env:TEST_PD_KEY", "url": pd.url + "/v2/enqueue"}),)
    inject_leak(healthy_sandbox)
    rec = run_runbook("db-pool-exhausted", archive, _params(sandbox_params), files)
    assert rec.exit_code == 0 and rec.summary["diagnosis"]["confirmed"] and rec.summary["severity"] == "P1"

    (s,) = slack.received
    assert s["path"] == "/services/T0/B0/XYZ"
    text = s["body"]["text"]
    assert "CONFIRMED" in text and "db-pool-exhausted" in text and "[P1]" in text
    assert str(rec.path) in text and "terminate-idle-connections" in text
    assert rec.summary["diagnosis"]["summary"] in text
    assert s["body"]["blocks"][0]["type"] == "header"
    (trigger,) = pd.received
    t = trigger["body"]
    assert t["routing_key"] == "R0UTINGKEY" and t["event_action"] == "trigger"
    assert t["dedup_key"] == "smartops:INC-notify-1"
    assert t["payload"]["severity"] == "critical" and t["payload"]["source"] == "smartops/sandbox"
    assert t["payload"]["summary"] and t["payload"]["custom_details"]["record"] == str(rec.path)
    # the record's hash and its chain entry leave the archive with the message: an outside anchor
    entry = open_archive(archive).entry(rec.path.name)
    assert t["payload"]["custom_details"]["chain_entry"] == entry["entry_hash"]
    assert t["payload"]["custom_details"]["record_sha256"] == entry["sha256"] and entry["entry_hash"] in text
    assert open_archive(archive).verify([entry["entry_hash"]]).ok

    healthy_sandbox.heal()
    later = run_runbook("db-pool-exhausted", archive, _params(sandbox_params), files)
    assert later.exit_code == 0 and not later.summary["diagnosis"]["confirmed"]
    assert "RESOLVED" in slack.received[1]["body"]["text"]
    resolve = pd.received[1]["body"]
    assert resolve["event_action"] == "resolve" and resolve["dedup_key"] == t["dedup_key"]
    logged = notify.outcomes_for(open_archive(archive), later.path.name)
    assert {(o["target"], o["event"], o["ok"]) for o in logged} == {("slack", "resolve", True),
                                                                    ("pagerduty", "resolve", True)}

    # a third quiet run: nothing was confirmed last time, so nobody is told anything
    third = run_runbook("db-pool-exhausted", archive, _params(sandbox_params), files)
    assert len(slack.received) == 2 and len(pd.received) == 2 and notify.outcomes_for(open_archive(archive), third.path.name) == []


@pytest.mark.timeout(240)
def test_failing_and_hanging_targets_are_logged_recorded_and_not_fatal(tmp_path, receivers, healthy_sandbox,
                                                                       sandbox_params, archive, caplog):
    broken, hanging = receivers(status=500), receivers(delay=10)
    files = (_notify_file(tmp_path, timeout_s=1, slack=[{"webhook_url": broken.url + "/hook"},
                                                        {"webhook_url": hanging.url + "/hook"}],
                          pagerduty={"routing_key": "env:SMARTOPS_TEST_UNSET_KEY"}),)
    inject_leak(healthy_sandbox)
    t0 = time.monotonic()
    rec = run_runbook("db-pool-exhausted", archive, _params(sandbox_params), files)
    assert rec.exit_code == 0 and rec.summary["status"] == "completed" and rec.summary["diagnosis"]["confirmed"]
    outcomes = notify.outcomes_for(open_archive(archive), rec.path.name)
    by_where = {o.get("where", o["target"]): o for o in outcomes}
    assert len(outcomes) == 3 and not any(o["ok"] for o in outcomes)
    assert by_where[broken.url]["status"] == 500 and "HTTP 500" in by_where[broken.url]["error"]
    assert "timed out" in by_where[hanging.url]["error"]
    assert "SMARTOPS_TEST_UNSET_KEY which is not set" in by_where["pagerduty"]["error"]
    assert len(broken.received) == 1 and len(hanging.received) == 1
    assert "notification to slack" in caplog.text and "failed" in caplog.text
    assert time.monotonic() - t0 < 60

