"""Browser security of `smartops serve`'s HTTP layer, in both modes (issue 20 part 4, issue 22 item 6).

The real app (:func:`serve.make_app` with the real pages of :mod:`web` over a folder archive holding
a record and its pending plan), driven by Starlette's TestClient. Only the runs are left out: the
webhook's intake is a recorder of what it was handed (what it would queue).
"""
from __future__ import annotations

import os
import stat

import pytest
from starlette.testclient import TestClient

from smartops_nb.records.archive import open_archive
from smartops_nb.records import plans
from smartops_nb.server import security, serve, web
from smartops_nb.server.sessions import SECRET_FILE, Sessions, install_secret
from tests.fixtures.archives import cli, synthetic  # noqa: F401 - cli: a fixture

TOKEN = "unit-serve-token-7d1e"
PORT = 9095
BASE = f"http://127.0.0.1:{PORT}"
ALERT = {"version": "4", "status": "firing", "receiver": "smartops", "groupLabels": {}, "commonLabels": {},
         "commonAnnotations": {}, "externalURL": "http://am", "groupKey": "{}", "truncatedAlerts": 0,
         "alerts": [{"status": "firing", "labels": {"alertname": "PostgresConnectionsNearLimit"}, "annotations": {},
                     "startsAt": "2026-11-26T14:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "abc"}]}


class Intake:
    """What the webhook hands on: recorded, never run."""

    accepting = True

    def __init__(self):
        self.handled: list = []

    async def handle_async(self, doc):
        self.handled.append(doc)
        return 202, {"accepted": len(doc["alerts"])}

    async def health_async(self):
        return 200, {"status": "ok"}

    async def open_async(self):
        pass

    async def close_async_http(self):
        pass


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def seeded(folder, plan_count: int = 1) -> dict:
    """A folder archive holding one record of incident INC-sec with ``plan_count`` pending plans."""
    nb, summary = synthetic(causes=["idle-connection-leak"], incident_id="INC-sec")
    summary["plans"] = nb.metadata["smartops"]["plans"] = [plans.make(runbook="db-pool-exhausted",
                                   incident_id="INC-sec", severity="P1",
                                   action="terminate-idle-connections", target="database smartamazon",
                                   causes=["idle-connection-leak"], parameters={"idle_minutes": 5.0 + i},
                                   evidence={"pids": [1 + i]}) for i in range(plan_count)]
    path = open_archive(folder).write(nb, summary)
    ids = [p["id"] for p in summary["plans"]]
    return {"folder": folder, "record": path.name, "plan": ids[0], "plans": ids}


@pytest.fixture
def archive(tmp_path):
    return seeded(tmp_path / "incidents")


def app(archive, token=None, tmp_path=None, *, host="127.0.0.1", public_url="", clock=None):
    sessions = Sessions(install_secret(tmp_path / "state"), port=PORT, **({"clock": clock} if clock else {}))
    intake = Intake()
    pages = web.Pages(open_archive(archive["folder"]), token, sessions=sessions)
    client = TestClient(serve.make_app(intake, token, pages, host=host, public_url=public_url), base_url=BASE,
                        follow_redirects=False)
    return client, intake, sessions


def csrf_of(client, path="/incidents/INC-sec") -> str:
    import re

    return re.search(r'name="csrf" value="([0-9a-f]+)"', client.get(path).text).group(1)


def state(archive) -> str:
    return open_archive(archive["folder"]).plan_store().get(archive["plan"]).state


# -- the install's secret ------------------------------------------------------------------------
def test_the_secret_is_made_once_private_and_differs_between_installs(tmp_path):
    a = install_secret(tmp_path / "a")
    assert install_secret(tmp_path / "a") == a and len(a) >= 32
    assert stat.S_IMODE(os.stat(tmp_path / "a" / SECRET_FILE).st_mode) == 0o600
    assert install_secret(tmp_path / "b") != a
    assert [p.name for p in (tmp_path / "a").iterdir()] == [SECRET_FILE]  # no temporary file left


def test_a_damaged_secret_file_is_a_clear_error(tmp_path):
    from smartops_nb.contract import ParameterError

    (tmp_path / SECRET_FILE).write_text("short\n")
    with pytest.raises(ParameterError, match="delete it"):
        install_secret(tmp_path)


def test_loopback_csrf_tokens_are_not_the_same_on_every_install(archive, tmp_path):
    import hashlib
    import hmac

    one = csrf_of(app(archive, tmp_path=tmp_path / "one")[0])
    two = csrf_of(app(archive, tmp_path=tmp_path / "two")[0])
    constant = hmac.new(b"loopback", b"smartops-csrf", hashlib.sha256).hexdigest()
    assert one != two and constant not in (one, two)


# -- Origin / Sec-Fetch-Site -------------------------------------------------------------------------
@pytest.mark.parametrize("headers", [{"Origin": "http://127.0.0.1:8000"}, {"Origin": "http://attacker.example"},
                                     {"Origin": "null"}, {"Sec-Fetch-Site": "same-site"},
                                     {"Sec-Fetch-Site": "cross-site"}])
def test_a_cross_origin_approval_is_refused_and_the_plan_stays_pending(archive, tmp_path, headers):
    client, _, _ = app(archive, tmp_path=tmp_path)
    form = {"csrf": csrf_of(client), "operator": "mallory", "confirm": archive["plan"]}
    r = client.post(f"/plans/{archive['plan']}/approve", data=form, headers=headers)
    assert r.status_code == 403, r.text
    r = client.post(f"/approvals/{archive['plan']}", json={"operator": "mallory"}, headers=headers)
    assert r.status_code == 403, r.text
    assert state(archive) == "pending"


def test_a_cross_origin_alert_post_is_refused_and_nothing_queued(archive, tmp_path):
    client, intake, _ = app(archive, tmp_path=tmp_path)
    r = client.post("/alerts", json=ALERT, headers={"Origin": "http://localhost:3000", "Sec-Fetch-Site": "same-site"})
    assert r.status_code == 403 and intake.handled == []


def test_a_same_origin_form_still_works(archive, tmp_path):
    client, _, _ = app(archive, tmp_path=tmp_path)
    form = {"csrf": csrf_of(client), "operator": "alice", "reason": "not now"}
    r = client.post(f"/plans/{archive['plan']}/deny", data=form,
                    headers={"Origin": BASE, "Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 303 and state(archive) == "denied"


def test_a_hidden_origin_counts_only_with_a_same_origin_fetch_site(archive, tmp_path):
    client, _, _ = app(archive, tmp_path=tmp_path)
    form = {"csrf": csrf_of(client), "operator": "alice", "reason": "not now"}
    r = client.post(f"/plans/{archive['plan']}/deny", data=form, headers={"Origin": "null", "Sec-Fetch-Site": "none"})
    assert r.status_code == 403 and state(archive) == "pending"
    r = client.post(f"/plans/{archive['plan']}/deny", data=form,
                    headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 303 and state(archive) == "denied"


def test_the_public_url_is_an_origin_of_ours(archive, tmp_path):
    client, intake, _ = app(archive, tmp_path=tmp_path, public_url="https://smartops.example.com/")
    r = client.post("/alerts", json=ALERT, headers={"Origin": "https://smartops.example.com",
                                                    "Host": "smartops.example.com"})
    assert r.status_code == 202 and len(intake.handled) == 1


def test_requests_without_browser_headers_pass_on_to_their_other_checks(archive, tmp_path):
    client, intake, _ = app(archive, tmp_path=tmp_path)
    assert client.post("/alerts", json=ALERT).status_code == 202 and len(intake.handled) == 1  # Alertmanager, curl
    r = client.post(f"/plans/{archive['plan']}/approve", data={"operator": "m", "confirm": archive["plan"]})
    assert r.status_code == 403 and state(archive) == "pending"  # no CSRF token: still refused


# -- Host (DNS rebinding) ----------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:9095", "127.0.0.1.nip.io:9095"])
def test_a_foreign_host_gets_nothing(archive, tmp_path, host):
    client, intake, _ = app(archive, tmp_path=tmp_path)
    for r in (client.get("/incidents", headers={"Host": host}), client.get("/healthz", headers={"Host": host}),
              client.post("/alerts", json=ALERT, headers={"Host": host})):
        assert r.status_code == 421 and "INC-sec" not in r.text
    assert intake.handled == []


@pytest.mark.parametrize("host", [f"127.0.0.1:{PORT}", f"localhost:{PORT}", f"[::1]:{PORT}", "localhost",
                                  f"app.localhost:{PORT}"])
def test_loopback_names_are_ours(archive, tmp_path, host):
    client, _, _ = app(archive, tmp_path=tmp_path)
    assert client.get("/incidents", headers={"Host": host}).status_code == 200


def test_a_malformed_host_is_400(archive, tmp_path):
    client, _, _ = app(archive, tmp_path=tmp_path)
    assert client.get("/incidents", headers={"Host": "a b@c:x"}).status_code == 400


def test_the_public_urls_host_is_ours_and_a_wildcard_listener_takes_any(archive, tmp_path):
    client, _, _ = app(archive, TOKEN, tmp_path, host="10.1.2.3", public_url="https://ops.example.com")
    ok = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/incidents", headers={**ok, "Host": "ops.example.com"}).status_code == 200
    assert client.get("/incidents", headers={**ok, "Host": "10.1.2.3:9095"}).status_code == 200
    assert client.get("/incidents", headers={**ok, "Host": "attacker.example"}).status_code == 421
    client, _, _ = app(archive, TOKEN, tmp_path, host="0.0.0.0")
    assert client.get("/incidents", headers={**ok, "Host": "smartops.monitoring.svc"}).status_code == 200


# -- Content-Type of the webhook ---------------------------------------------------------------------
@pytest.mark.parametrize("ctype", ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                                   "multipart/form-data; boundary=x", None])
def test_alerts_only_as_json(archive, tmp_path, ctype):
    import json

    client, intake, _ = app(archive, tmp_path=tmp_path)
    headers = {"Content-Type": ctype} if ctype else {}
    r = client.post("/alerts", content=json.dumps(ALERT).encode(), headers=headers)
    assert r.status_code == 415 and intake.handled == []
    r = client.post("/alerts", content=json.dumps(ALERT).encode(),
                    headers={"Content-Type": "Application/JSON; charset=utf-8"})
    assert r.status_code == 202 and len(intake.handled) == 1


# -- bearer scheme (RFC 9110: case-insensitive) --------------------------------------------------------
@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "beaRer"])
def test_the_bearer_scheme_in_any_case(archive, tmp_path, scheme):
    client, intake, _ = app(archive, TOKEN, tmp_path)
    auth = {"Authorization": f"{scheme} {TOKEN}"}
    assert client.post("/alerts", json=ALERT, headers=auth).status_code == 202 and len(intake.handled) == 1
    assert client.get("/incidents", headers=auth).status_code == 200
    r = client.post(f"/approvals/{archive['plan']}", content=b"{not json", headers=auth)
    assert r.status_code == 400  # past the token check (a bad body), nothing done
    for wrong in (f"{scheme} {TOKEN}x", f"Basic {TOKEN}", f"{scheme}", TOKEN, f"{scheme}{TOKEN}"):
        assert client.post("/alerts", json=ALERT, headers={"Authorization": wrong}).status_code == 401
        assert client.get("/incidents", headers={"Authorization": wrong}).status_code == 401
    assert len(intake.handled) == 1


# -- the sign-in cookie ------------------------------------------------------------------------------
def sign_in(client, sessions):
    r = client.get(f"/incidents?token={TOKEN}")
    assert r.status_code == 303 and "token" not in r.headers["location"]
    return r.headers["set-cookie"], client.cookies.get(sessions.cookie)


def test_the_cookie_holds_a_session_never_the_token(archive, tmp_path):
    client, _, sessions = app(archive, TOKEN, tmp_path)
    header, value = sign_in(client, sessions)
    assert TOKEN not in header and value and TOKEN not in value
    assert str(PORT) in sessions.cookie and sessions.cookie != "smartops_token"
    attrs = {a.strip().split("=")[0].lower(): a.strip() for a in header.split(";")}
    assert "httponly" in attrs and attrs["samesite"].lower() == "samesite=strict" and attrs["path"] == "Path=/"
    assert client.get("/incidents").status_code == 200  # the session lets the pages in
    # the raw token as the cookie's value (the old cookie) is not a session
    other = TestClient(client.app, base_url=BASE, cookies={sessions.cookie: TOKEN, "smartops_token": TOKEN})
    assert other.get("/incidents").status_code == 401


def test_installs_and_ports_get_cookies_of_their_own(tmp_path):
    a, b = Sessions(install_secret(tmp_path / "a"), port=9095), Sessions(install_secret(tmp_path / "b"), port=9095)
    assert len({a.cookie, b.cookie, Sessions(install_secret(tmp_path / "a"), port=9096).cookie}) == 3
    assert a.check(b.start()) is None  # another install's session means nothing here


def test_a_session_expires(archive, tmp_path):
    clock = Clock()
    client, _, sessions = app(archive, TOKEN, tmp_path, clock=clock)
    sign_in(client, sessions)
    clock.now += sessions.ttl - 1
    assert client.get("/incidents").status_code == 200
    clock.now += 2
    assert client.get("/incidents").status_code == 401


def test_sign_out_ends_the_session_even_for_a_copied_cookie(archive, tmp_path):
    client, _, sessions = app(archive, TOKEN, tmp_path)
    _, value = sign_in(client, sessions)
    page = client.get("/incidents/INC-sec").text
    assert 'action="/signout"' in page
    r = client.post("/signout", data={"csrf": csrf_of(client)}, headers={"Origin": BASE})
    assert r.status_code == 303 and sessions.cookie in r.headers["set-cookie"]
    replay = TestClient(client.app, base_url=BASE, cookies={sessions.cookie: value})
    assert replay.get("/incidents").status_code == 401


def test_a_forged_or_tampered_session_cookie_is_refused(archive, tmp_path):
    client, _, sessions = app(archive, TOKEN, tmp_path)
    _, value = sign_in(client, sessions)
    sid, _, sig = value.partition(".")
    for forged in (f"{sid}.{'0' * len(sig)}", f"x{sid}.{sig}", sid, ""):
        c = TestClient(client.app, base_url=BASE, cookies={sessions.cookie: forged})
        assert c.get("/incidents").status_code == 401


def test_a_cookie_alone_does_not_approve_through_the_api(archive, tmp_path):
    client, _, sessions = app(archive, TOKEN, tmp_path)
    sign_in(client, sessions)
    assert client.post(f"/approvals/{archive['plan']}", json={"operator": "m"}).status_code == 401
    assert state(archive) == "pending"


# -- headers on every answer ---------------------------------------------------------------------------
def test_every_answer_has_nosniff_and_every_html_or_text_one_a_csp(archive, tmp_path):
    client, _, _ = app(archive, tmp_path=tmp_path)
    rec = archive["record"]
    answers = [client.get(p) for p in (
        "/", "/incidents", "/incidents/INC-sec", "/incidents/INC-sec/postmortem", f"/records/{rec}",
        f"/records/{rec}/view", f"/records/{rec}/download", "/incidents/nope", "/healthz", "/nothing-here")]
    answers += [client.post("/alerts", json=ALERT),
                client.post("/alerts", content=b"x", headers={"Content-Type": "text/plain"}),
                client.get("/incidents", headers={"Host": "attacker.example"}),
                client.post("/alerts", json=ALERT, headers={"Origin": "http://evil.example"})]
    client, _, _ = app(archive, TOKEN, tmp_path)  # token mode: the sign-in page, the 401s
    answers += [client.get("/incidents"), client.get(f"/incidents?token={TOKEN}"), client.post("/alerts", json=ALERT)]
    for r in answers:
        where = f"{r.request.method} {r.request.url.path} -> {r.status_code}"
        assert r.headers.get("x-content-type-options") == "nosniff", where
        assert r.headers.get("content-security-policy"), where
        if r.headers.get("content-type", "").startswith("text/html"):
            assert "script-src" not in r.headers["content-security-policy"], where  # no script at all
    postmortem = answers[3]
    assert postmortem.status_code == 200 and postmortem.headers["content-type"].startswith("text/markdown")
    assert "sandbox" in postmortem.headers["content-security-policy"]
    assert answers[5].headers["content-security-policy"] == web.RECORD_CSP  # the record keeps its own


# -- --trusted-proxy ----------------------------------------------------------------------------------
def test_trusted_proxies_are_addresses_or_networks():
    from smartops_nb.contract import ParameterError

    assert security.trusted_proxies(["10.0.0.1", "10.1.0.0/16, ::1", ""]) == ["10.0.0.1", "10.1.0.0/16", "::1"]
    with pytest.raises(ParameterError, match="not an IP"):
        security.trusted_proxies(["proxy.example"])


def test_a_bad_trusted_proxy_exits_2_in_one_line(cli):
    out = cli("serve", "--trusted-proxy", "proxy.example", "--routes", "/nonexistent.yaml")
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and "--trusted-proxy" in out.stderr


@pytest.mark.parametrize("proxies, seen", [([], "127.0.0.1"), (["127.0.0.0/8"], "203.0.113.9")])
def test_x_forwarded_for_counts_only_from_a_trusted_proxy(archive, tmp_path, caplog, proxies, seen):
    """A real uvicorn on a loopback socket: the client address the webhook logs for a wrong token."""
    import threading
    import urllib.error
    import urllib.request

    import uvicorn

    from smartops_nb.waiting import until

    pages = web.Pages(open_archive(archive["folder"]), TOKEN, sessions=Sessions(install_secret(tmp_path / "state")))
    server = uvicorn.Server(serve.http_config(serve.make_app(Intake(), TOKEN, pages), proxies))
    sock = serve.listen("127.0.0.1", 0)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        assert until(lambda: server.started, timeout=30, interval=0.05)
        req = urllib.request.Request(f"http://127.0.0.1:{sock.getsockname()[1]}/alerts", data=b"{}", method="POST",
                                     headers={"X-Forwarded-For": "203.0.113.9", "Content-Type": "application/json"})
        with caplog.at_level("WARNING", logger="smartops.serve"), pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == 401
        assert f"unauthorized POST from {seen} " in caplog.text, caplog.text
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
