"""The webhook's routes (:data:`smartops_nb.server.serve.WEBHOOK`) through Starlette's TestClient.

One app for the module (token mode, no pages: what ``make_app`` serves without a web view; the intake
a recorder of what it would queue), a fresh client per test. Every refusal is checked to hand nothing on.
"""
from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from smartops_nb.alerts.routes import MAX_ALERTS, MAX_DEPTH
from smartops_nb.server import serve
from tests.unit.server.test_browser_security import ALERT, BASE, TOKEN, Intake

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def intake():
    return Intake()


@pytest.fixture
def c(intake):
    intake.handled.clear()
    return TestClient(serve.make_app(intake, TOKEN), base_url=BASE, follow_redirects=False)


def post(c, body: bytes, headers=None):
    return c.post("/alerts", content=body, headers={**AUTH, "Content-Type": "application/json", **(headers or {})})


def test_healthz_needs_no_token_and_tells_the_process(c):
    for r in (c.get("/healthz"), c.head("/healthz")):
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = c.get("/healthz").json()
    assert body["status"] == "ok" and {"process"} <= set(body)


@pytest.mark.parametrize("path", ["/", "/alerts", "/incidents", "/healthz/x"])
def test_any_other_get_is_a_json_404_naming_the_two_routes(c, path):
    r = c.get(path)
    assert r.status_code == 404 and "POST alerts to /alerts, GET /healthz" in r.json()["error"]


@pytest.mark.parametrize("path", ["/alerts", "/", "/any/where", "/healthz"])
def test_a_post_anywhere_is_the_webhook(c, intake, path):
    assert c.post(path, json=ALERT).status_code == 401  # the webhook's token check, /healthz included
    r = c.post(path, json=ALERT, headers=AUTH)
    assert r.status_code == 202 and r.json() == {"accepted": 1} and len(intake.handled) == 1


@pytest.mark.parametrize("auth", [None, "Bearer", f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN])
def test_a_missing_or_wrong_token_is_401_with_the_scheme(c, intake, auth):
    r = c.post("/alerts", json=ALERT, headers={"Authorization": auth} if auth else {})
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Bearer realm="smartops"'
    assert r.json() == {"error": "missing or wrong bearer token"} and intake.handled == []


def test_the_token_comes_before_the_content_type(c, intake):
    assert c.post("/alerts", content=b"x", headers={"Content-Type": "text/plain"}).status_code == 401
    r = c.post("/alerts", content=b"x", headers={**AUTH, "Content-Type": "text/plain"})
    assert r.status_code == 415 and "application/json" in r.json()["error"] and intake.handled == []


@pytest.mark.parametrize("length, status", [("abc", 400), ("-1", 400), (str(serve.MAX_BODY + 1), 413)])
def test_a_bad_or_too_large_content_length_is_refused_unread(c, intake, length, status):
    r = post(c, b"{}", {"Content-Length": length})
    assert r.status_code == status and r.json()["error"] == "bad or too large Content-Length"
    assert intake.handled == []


def test_a_body_past_the_limit_without_a_length_is_413(c, intake):
    def chunks():  # sent chunked: no Content-Length to refuse it by
        for _ in range(serve.MAX_BODY // 65536 + 2):
            yield b" " * 65536

    r = c.post("/alerts", content=chunks(), headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"] == "body too large" and intake.handled == []


def nested(depth: int) -> dict:
    alert = dict(ALERT["alerts"][0])
    value: object = "x"
    for _ in range(depth):
        value = {"k": value}
    alert["annotations"] = {"deep": value}
    return {**ALERT, "alerts": [alert]}


@pytest.mark.parametrize("doc, status, says", [
    (b"{not json", 400, "malformed Alertmanager payload: not JSON"),
    (json.dumps({**ALERT, "version": "3"}).encode(), 400, "unsupported payload version"),
    (json.dumps({**ALERT, "alerts": []}).encode(), 400, "'alerts' must be a non-empty list"),
    (json.dumps({**ALERT, "alerts": ALERT["alerts"] * (MAX_ALERTS + 1)}).encode(), 413, "MAX_ALERTS"),
    (json.dumps(nested(MAX_DEPTH + 1)).encode(), 422, "MAX_DEPTH"),
])
def test_a_refused_payload_names_why_and_nothing_is_queued(c, intake, doc, status, says):
    r = post(c, doc)
    assert r.status_code == status and says in r.json()["error"], r.text
    assert intake.handled == []


def test_while_draining_alerts_are_503(c, intake):
    intake.accepting = False
    try:
        r = c.post("/alerts", json=ALERT, headers=AUTH)
    finally:
        intake.accepting = True
    assert r.status_code == 503 and r.json() == {"error": "shutting down"} and intake.handled == []


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_other_methods_are_405(c, intake, method):
    assert c.request(method, "/alerts", headers=AUTH).status_code == 405 and intake.handled == []


def test_every_route_refuses_a_foreign_host_and_a_foreign_page(c, intake):
    for route in serve.WEBHOOK:
        path = route.path.replace("{path:path}", "alerts")
        for method in route.methods - {"HEAD"}:
            r = c.request(method, path, headers={**AUTH, "Host": "attacker.example"})
            assert r.status_code == 421 and r.headers["x-content-type-options"] == "nosniff", path
    r = c.post("/alerts", json=ALERT, headers={**AUTH, "Origin": "http://attacker.example"})
    assert r.status_code == 403 and intake.handled == []


def test_the_lifespan_opens_and_closes_the_mode():
    class Recorded(Intake):
        def __init__(self):
            super().__init__()
            self.events = []

        async def open_async(self):
            self.events.append("open")

        async def close_async_http(self):
            self.events.append("close")

    mode = Recorded()
    with TestClient(serve.make_app(mode, None), base_url=BASE) as client:
        assert client.post("/alerts", json=ALERT).status_code == 202  # no token: loopback mode
        assert mode.events == ["open"]
    assert mode.events == ["open", "close"]
