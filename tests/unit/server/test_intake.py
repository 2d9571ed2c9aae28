"""Idempotent intake, in-process mode without workers (no services): a repeat of an episode already
taken in starts no run even after the first run finished; a refused run is released for the retry."""
from __future__ import annotations

import yaml

from smartops_nb.server.serve import Service, load_routes
from smartops_nb.records.archive import open_archive

ALERT = {"status": "firing", "labels": {"alertname": "HighAPILatency", "severity": "P3"}, "annotations": {},
         "startsAt": "2026-12-04T16:09:52Z", "fingerprint": "f00d"}


def _service(tmp_path, queue_size=10, **route) -> Service:
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump({"routes": [{"alertname": "HighAPILatency", "runbook": "high-latency", **route}]}))
    return Service(load_routes(path), open_archive(tmp_path / "archive"), workers=0, warm=0, queue_size=queue_size)


def _finish_all(svc: Service) -> list:
    """What a worker thread does when its runs end (none run here): the queue and the in-flight set emptied."""
    jobs = []
    while not svc.queue.empty():
        job = svc.queue.get_nowait()
        jobs.append(job)
        svc._active.pop(job.key, None)
    return jobs


def test_a_repeat_of_a_finished_episode_starts_no_run_but_a_recurrence_does(tmp_path):
    svc = _service(tmp_path)
    status, body = svc.handle({"version": "4", "alerts": [ALERT]})
    assert status == 202 and [e["incident_id"] for e in body["accepted"]] == ["HighAPILatency-f00d-20261204T160952Z"]
    [job] = _finish_all(svc)
    assert job.prep.parameters["severity"] == "P3"   # from the alert's label
    # regrouping / repeat_interval / an HA peer: the same episode again, after its run ended
    status, body = svc.handle({"version": "4", "alerts": [ALERT]})
    assert status == 202 and "accepted" not in body and len(body["deduplicated"]) == 1
    assert _finish_all(svc) == []
    # a recurrence after resolve: a new episode, a new incident
    again = {**ALERT, "startsAt": "2026-12-04T16:13:35Z"}
    status, body = svc.handle({"version": "4", "alerts": [again]})
    assert len(body["accepted"]) == 1
    assert body["accepted"][0]["incident_id"].endswith("-20261204T161335Z")


def test_a_refused_run_is_released_so_the_retry_runs_it(tmp_path):
    svc = _service(tmp_path, queue_size=1)
    svc.handle({"version": "4", "alerts": [{**ALERT, "fingerprint": "other"}]})   # fills the queue
    status, body = svc.handle({"version": "4", "alerts": [ALERT]})
    assert status == 503 and body["rejected"][0]["reason"] == "queue full"
    _finish_all(svc)
    status, body = svc.handle({"version": "4", "alerts": [ALERT]})                # Alertmanager's retry
    assert status == 202 and len(body["accepted"]) == 1


def test_a_route_with_recheck_after_runs_a_recheck_of_the_same_incident(tmp_path):
    svc = _service(tmp_path, recheck_after="1s")
    svc.handle({"version": "4", "alerts": [ALERT]})
    _finish_all(svc)
    import sqlite3  # the episode's last run is now: make it older than recheck_after
    con = sqlite3.connect(tmp_path / "archive" / ".index.sqlite")
    con.execute("UPDATE alert_episodes SET run_at = '2026-01-01T00:00:00Z'")
    con.commit()
    con.close()
    status, body = svc.handle({"version": "4", "alerts": [ALERT]})
    assert body["accepted"] == [{"incident_id": "HighAPILatency-f00d-20261204T160952Z", "runbook": "high-latency",
                                 "kind": "firing", "recheck": True}]
