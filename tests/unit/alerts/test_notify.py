"""Notifications against real HTTP receivers on loopback, after real runs on the sandbox."""
from __future__ import annotations

import json

import pytest

from smartops_nb.alerts import notify


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
                                archive)
    assert len(outcomes) == 3 and not any(o["ok"] for o in outcomes)
    assert all("unknown url type" in o["error"] for o in outcomes), outcomes
    logged = (archive / notify.LOG_NAME).read_text()
    for text in (logged, caplog.text, json.dumps(outcomes)):
        assert "SECRET" not in text and "T000" not in text and "T111" not in text and "R0UTING" not in text


def test_previous_record_comes_from_the_index(tmp_path, monkeypatch):
    import nbformat

    from smartops_nb.records import archive as record_archive

    folder = tmp_path / "incidents"
    paths = {}
    for incident, started, confirmed in (("INC-A", "2026-11-26T14:00:00Z", True),
                                         ("INC-A", "2026-11-26T15:00:00Z", False),
                                         ("INC-B", "2026-11-26T16:00:00Z", True)):
        summary = _summary(incident, started, confirmed)
        nb = nbformat.v4.new_notebook(metadata={"smartops": summary})
        paths[started] = record_archive.write_record(nb, summary, folder)

    def no_scan(*a):
        raise AssertionError("the records were read although there is an index")

    with monkeypatch.context() as m:
        m.setattr(notify, "_scan_previous", no_scan)
        latest = notify.previous_record(folder, "INC-A")
        assert latest["started_at"] == "2026-11-26T15:00:00Z" and latest["diagnosis"]["confirmed"] is False
        earlier = notify.previous_record(folder, "INC-A", exclude=paths["2026-11-26T15:00:00Z"])
        assert earlier["started_at"] == "2026-11-26T14:00:00Z" and earlier["diagnosis"]["confirmed"] is True
        assert notify.event_for(_summary("INC-A", "2026-11-26T17:00:00Z", False), earlier) == "resolve"
        assert notify.previous_record(folder, "INC-C") is None
    record_archive.index_path(folder).unlink()  # no index: the records are read
    earlier = notify.previous_record(folder, "INC-A", exclude=paths["2026-11-26T15:00:00Z"])
    assert earlier["started_at"] == "2026-11-26T14:00:00Z" and earlier["diagnosis"]["confirmed"] is True

