"""Notifications against real HTTP receivers on loopback, after real runs on the sandbox."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from smartops_nb.alerts import notify
from smartops_nb.records.archive import open_archive


def _summary(incident: str, started: str, confirmed: bool) -> dict:
    return {"schema": 1, "runbook": "api-down", "title": "API Service Down", "severity": "P1",
            "environment": "prod", "incident_id": incident, "status": "completed", "started_at": started,
            "finished_at": started, "actions": [], "findings": [],
            "diagnosis": {"confirmed": confirmed, "causes": ["container-crashed"] if confirmed else [],
                          "summary": "it crashed" if confirmed else "fine"}}


def test_payload_shapes_and_config_errors(tmp_path):
    summary = {"runbook": "api-down", "title": "API Service Down", "severity": "P2", "environment": "prod",
               "incident_id": "INC-9", "status": "completed", "actions": [],
               "diagnosis": {"confirmed": True, "causes": ["container-crashed"], "summary": "it crashed"}}
    assert notify.event_for(summary, None) == "trigger"
    quiet = {**summary, "diagnosis": {"confirmed": False, "causes": [], "summary": "fine"}}
    assert notify.event_for(quiet, summary) == "resolve" and notify.event_for(quiet, quiet) is None
    assert notify.event_for({**quiet, "status": "failed"}, summary) is None
    body = notify.pagerduty_payload(quiet, tmp_path / "r.ipynb", "resolve", "K")
    assert body == {"routing_key": "K", "event_action": "resolve", "dedup_key": "smartops:INC-9"}
    from smartops_nb.params import ParameterError

    for bad in ({"notify": {"slack": {}}}, {"notify": {"email": {}}}, {"notify": {"timeout_s": 0}}, {"notify": []}):
        with pytest.raises(ParameterError):
            notify.targets(bad)


def test_a_webhook_url_without_scheme_stays_out_of_logs_and_outcomes(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("SMARTOPS_TEST_HOOK", "hooks.slack.com/services/T000/B000/SECRETenv")
    monkeypatch.setenv("SMARTOPS_TEST_PD_KEY", "R0UTINGsecretKEY")
    config = {"notify": {"timeout_s": 1,
                         "slack": [{"webhook_url": "env:SMARTOPS_TEST_HOOK"},
                                   {"webhook_url": "hooks.slack.com/services/T111/B111/SECRETliteral"}],
                         "pagerduty": {"routing_key": "env:SMARTOPS_TEST_PD_KEY",
                                       "url": "events.example.com/v2/enqueue/SECRETpd"}}}
    archive = tmp_path / "incidents"
    archive.mkdir()
    caplog.set_level("INFO")
    outcomes = notify.after_run(config, _summary("INC-nos", "2026-11-26T14:00:00Z", True), archive / "r.ipynb",
                                open_archive(archive))
    assert len(outcomes) == 3 and not any(o["ok"] for o in outcomes)
    assert all("unknown url type" in o["error"] for o in outcomes), outcomes
    logged = (archive / notify.LOG_NAME).read_text()
    for text in (logged, caplog.text, json.dumps(outcomes)):
        assert "SECRET" not in text and "T000" not in text and "T111" not in text and "R0UTING" not in text


def test_previous_record_comes_from_the_index(tmp_path, monkeypatch):
    import nbformat

    from smartops_nb.records.index_sqlite import index_path

    folder = tmp_path / "incidents"
    paths = {}
    for incident, started, confirmed in (("INC-A", "2026-11-26T14:00:00Z", True),
                                         ("INC-A", "2026-11-26T15:00:00Z", False),
                                         ("INC-B", "2026-11-26T16:00:00Z", True)):
        summary = _summary(incident, started, confirmed)
        nb = nbformat.v4.new_notebook(metadata={"smartops": summary})
        paths[started] = open_archive(folder).write(nb, summary)

    def no_scan(*a):
        raise AssertionError("the records were read although there is an index")

    with monkeypatch.context() as m:
        m.setattr(notify, "_scan_previous", no_scan)
        latest = notify.previous_record(open_archive(folder), "INC-A")
        assert latest["started_at"] == "2026-11-26T15:00:00Z" and latest["diagnosis"]["confirmed"] is False
        earlier = notify.previous_record(open_archive(folder), "INC-A", exclude=paths["2026-11-26T15:00:00Z"])
        assert earlier["started_at"] == "2026-11-26T14:00:00Z" and earlier["diagnosis"]["confirmed"] is True
        assert notify.event_for(_summary("INC-A", "2026-11-26T17:00:00Z", False), earlier) == "resolve"
        assert notify.previous_record(open_archive(folder), "INC-C") is None
    index_path(folder).unlink()  # no index: the records are read
    earlier = notify.previous_record(open_archive(folder), "INC-A", exclude=paths["2026-11-26T15:00:00Z"])
    assert earlier["started_at"] == "2026-11-26T14:00:00Z" and earlier["diagnosis"]["confirmed"] is True



def test_messages_link_the_incident_and_record_pages_when_serve_has_a_public_url(monkeypatch):
    from smartops_nb.alerts import notify

    summary = {"incident_id": "Leak a/b", "severity": "P1", "runbook": "db-pool-exhausted", "title": "t",
               "environment": "prod", "diagnosis": {"confirmed": True, "causes": ["idle-connection-leak"]},
               "plans": [{"id": "pl-abc", "action": "terminate-idle-connections", "target": "db",
                          "expires_at": "2026-11-29T12:15:00Z", "status": "pending"}]}
    monkeypatch.delenv("SMARTOPS_PUBLIC_URL", raising=False)
    assert notify.links(notify.public_url({}), summary, None) == {}
    config = {"notify": {"public_url": "https://ops.example/"}}
    pages = notify.links(notify.public_url(config), summary, Path("2026-11-29T12-00-00Z_x_prod.ipynb"))
    assert pages == {"incident": "https://ops.example/incidents/Leak%20a%2Fb",
                     "record": "https://ops.example/records/2026-11-29T12-00-00Z_x_prod.ipynb"}
    slack = notify.slack_payload(summary, Path("r.ipynb"), "trigger", None, pages)
    assert pages["incident"] in slack["text"] and pages["record"] in slack["text"]
    assert "smartops approve pl-abc --operator NAME" in slack["text"]
    pd = notify.pagerduty_payload(summary, Path("r.ipynb"), "trigger", "key", None, pages)
    details = pd["payload"]["custom_details"]
    assert details["incident_page"] == pages["incident"] and details["plans"][0]["id"] == "pl-abc"
    monkeypatch.setenv("SMARTOPS_PUBLIC_URL", "http://127.0.0.1:9095")
    assert notify.public_url({}) == "http://127.0.0.1:9095"


def test_an_inconclusive_or_failed_firing_run_notifies_and_a_plans_mitigation_run_does_not(tmp_path):
    summary = {"runbook": "api-down", "title": "API Service Down", "severity": "P1", "environment": "prod",
               "incident_id": "APIDown-f-20261204T160952Z", "status": "completed", "actions": [],
               "diagnosis": {"confirmed": False, "causes": [], "inconclusive": True,
                             "incomplete_steps": ["container-state", "container-logs"],
                             "summary": "Inconclusive: container-state, container-logs could not complete"}}
    assert notify.event_for(summary, None) == "trigger"        # the firing run: a person must look
    assert notify.event_for(summary, summary) is None           # a later inconclusive re-check: not news
    failed = {**summary, "status": "failed", "error": "kernel died", "diagnosis": {"confirmed": False}}
    assert notify.event_for(failed, None) == "trigger"
    assert notify.headline(summary, "trigger").startswith("[P1] INCONCLUSIVE: API Service Down")
    assert notify.headline(failed, "trigger").startswith("[P1] FAILED")
    text = notify.slack_payload(summary, tmp_path / "r.ipynb", "trigger")["text"]
    assert "could not check: container-state, container-logs" in text and "r.ipynb" in text
    body = notify.pagerduty_payload(failed, tmp_path / "r.ipynb", "trigger", "K")
    assert body["payload"]["custom_details"]["unchecked"] == "the run failed: kernel died"
    mitigation = {**summary, "parameters": {"plan_id": "p-1"},
                  "diagnosis": {"confirmed": True, "causes": ["container-crashed"]}}
    assert notify.event_for(mitigation, summary) is None        # after_plan tells its outcome, once


def test_a_plans_outcome_reaches_pagerduty_as_a_change_event_not_a_trigger():
    assert notify.change_url(notify.PAGERDUTY_URL) == "https://events.pagerduty.com/v2/change/enqueue"
    assert notify.change_url("http://127.0.0.1:9/v2/enqueue") == "http://127.0.0.1:9/v2/change/enqueue"
    plan = {"id": "pl-1", "status": "executed", "incident_id": "APIDown-f-20261204T160952Z", "severity": "P1",
            "action": "restart", "target": "api", "reason": "done"}
    body = notify.plan_change_event(plan, notify.plan_message(plan, None), None, "K")
    assert "event_action" not in body and body["routing_key"] == "K"
    assert body["payload"]["summary"].startswith("[P1] plan pl-1 EXECUTED")
    assert body["payload"]["custom_details"]["dedup_key"] == "smartops:APIDown-f-20261204T160952Z"
