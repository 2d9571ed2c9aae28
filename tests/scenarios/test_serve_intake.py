"""Hostile webhooks through a real `smartops serve`: bounded before anything is queued, a record for every
accepted alert however odd its labels, /healthz answering while a large post is handled, logs not forged.

The server is :class:`tests.scenarios.test_serve.Server` (a real process on a free loopback port, the
session's sandbox behind the runbooks).
"""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import quote

import pytest

from smartops_nb.alerts import routes
from smartops_nb.waiting import until
from tests.scenarios.test_serve import TOKEN, alert, base_params, payload, server  # noqa: F401 (fixtures)

FORGED = "2026-12-04 10:00:00,000 WARNING smartops.serve: forged line"


def _get(server, path: str, timeout: float = 10) -> int:
    req = urllib.request.Request(server.url(path), headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def _healthz_within_1s_until(server, done: threading.Event | None, check=lambda: False, timeout: float = 180) -> int:
    """Poll /healthz (each answer must come within 1 s: the bound is the feature) until ``done`` or ``check``."""
    polls, deadline = 0, time.monotonic() + timeout
    while not (done is not None and done.is_set()) and not check():
        assert time.monotonic() < deadline, server.log.read_text()[-3000:]
        with urllib.request.urlopen(server.url("/healthz"), timeout=1) as r:
            assert r.status == 200
        polls += 1
        time.sleep(0.05)
    return polls


@pytest.mark.timeout(300)
def test_odd_alerts_each_give_a_record_with_a_safe_id_while_healthz_answers(server, healthy_sandbox):
    fingerprint = "ab/c d\n" + FORGED + "\x1b[2J" + "f" * 20_000
    env = "e" * 300
    status, body = server.post(payload(alert("SlowProbe", fingerprint),
                                       alert("PostgresConnectionsNearLimit", "env300", env=env)))
    assert status == 202, body
    ids = {a["incident_id"] for a in body["accepted"]}
    (slow_id,) = [i for i in ids if i.startswith("SlowProbe-")]
    (env_id,) = [i for i in ids if i.startswith("PostgresConnectionsNearLimit-env300-")]  # then the episode
    assert len(slow_id) == routes.MAX_ID_CHARS and slow_id.startswith("SlowProbe-ab_c_d_2026-12-04_10")

    polls = _healthz_within_1s_until(server, None, check=lambda: len(server.records()) >= 2)
    assert polls > 0
    recs = {r["incident_id"]: r for r in server.wait_records(2)}
    assert recs[slow_id]["status"] == "completed"
    assert recs[env_id]["environment"] == env
    names = [p.name for p in server.archive.glob("*.ipynb")]
    assert len(names) == 2 and all(len(n) < 160 for n in names), names

    assert _get(server, "/incidents/" + quote(slow_id, safe="")) == 200  # the page link works: plans approvable
    for name in names:
        assert _get(server, f"/records/{name}") == 200
    assert _get(server, "/records/" + "r" * 5_000 + ".ipynb") == 404
    assert _get(server, "/records/" + "r" * 5_000) == 404


def test_a_newline_in_a_label_does_not_forge_a_log_line(server):
    status, body = server.post(payload(alert("Unrouted\n" + FORGED, "x1")))
    assert status == 202 and body["unrouted"]
    log = server.log.read_text()
    assert "alert received: Unrouted\\n" + FORGED in log
    assert not any(line.startswith(FORGED) for line in log.splitlines()), log


def test_x_forwarded_for_from_a_loopback_client_is_not_the_client(server):
    req = urllib.request.Request(server.url("/alerts"), data=json.dumps(payload(alert("SlowProbe", "x"))).encode(),
                                 headers={"Content-Type": "application/json", "X-Forwarded-For": "203.0.113.9"},
                                 method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 401
    assert until(lambda: "unauthorized POST from 127.0.0.1" in server.log.read_text(), timeout=10)
    assert "203.0.113.9" not in server.log.read_text()


SURROGATE = (b'{"version": "4", "alerts": [{"status": "firing", "labels": {"alertname": "SlowProbe"}, '
             b'"fingerprint": "ab\\ud800cd", "startsAt": "2026-12-04T10:00:00Z"}]}')
DEEP = b'{"version": "4", "alerts": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
TOO_DEEP = json.dumps(payload({**alert("SlowProbe", "d1"), "annotations": {"a": [[[[[[[["x"]]]]]]]]}})).encode()
LONG_LABEL = json.dumps(payload(alert("SlowProbe", "l1", env="e" * (routes.MAX_VALUE_CHARS + 1)))).encode()


@pytest.mark.parametrize("body, status, says", [
    (SURROGATE, 400, "lone surrogate"),
    (DEEP, 400, "nested too deep"),
    (TOO_DEEP, 422, "MAX_DEPTH = 8"),
    (LONG_LABEL, 413, "MAX_VALUE_CHARS = 32768"),
], ids=["surrogate", "deep", "too-deep", "long-label"])
def test_a_hostile_payload_is_refused_before_anything_is_queued(server, body, status, says):
    got, answer = server.post(body)
    assert got == status and says in answer["error"], answer
    h = server.health()
    assert h["queued"] == 0 and h["running"] == 0 and h["finished"] == 0 and not server.archive.exists()


@pytest.mark.timeout(120)
def test_ten_thousand_alerts_are_413_naming_the_limit_and_healthz_answers_meanwhile(server):
    one = {"status": "firing", "labels": {"alertname": "SlowProbe"}}  # small: 10,000 of them under MAX_BODY
    body = json.dumps({"version": "4", "alerts": [{**one, "fingerprint": f"{i}"} for i in range(10_000)]},
                      separators=(",", ":")).encode()
    assert len(body) < 1 << 20
    done, answer = threading.Event(), []
    poster = threading.Thread(target=lambda: (answer.append(server.post(body)), done.set()))
    poster.start()
    _healthz_within_1s_until(server, done, timeout=60)
    poster.join(10)
    status, out = answer[0]
    assert status == 413 and "MAX_ALERTS = 1000" in out["error"], out
    h = server.health()
    assert h["queued"] == 0 and h["finished"] == 0 and not server.archive.exists()


@pytest.mark.timeout(240)
def test_in_queue_mode_a_hostile_payload_is_refused_and_nothing_is_queued(tmp_path, queue_dsn, base_params):  # noqa: F811
    from tests.scenarios.test_queue import Team

    team = Team(tmp_path, queue_dsn, base_params)
    try:
        serve = team.serve()
        many = json.dumps({"version": "4", "alerts": [{"status": "firing", "labels": {"alertname": "A"}}] * 1001})
        for body, status in ((SURROGATE, 400), (DEEP, 400), (TOO_DEEP, 422), (LONG_LABEL, 413), (many.encode(), 413)):
            assert team.post(serve, body)[0] == status
        s = team.status()
        assert s["jobs"] == {} and s["waiting"] == 0, s
    finally:
        team.stop()
