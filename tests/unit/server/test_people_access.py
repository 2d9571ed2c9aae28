"""Who may do what on `smartops serve` (issue 24): personal tokens, the policy's roles, the Alertmanager
credential. The real app over a folder archive with a pending plan, driven by Starlette's TestClient;
every request here is refused or only partly approves, so no runbook runs."""
from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from smartops_nb.people import policy
from smartops_nb.people.tokens import Tokens
from smartops_nb.records import plans
from smartops_nb.records.archive import open_archive
from smartops_nb.server import serve, web
from smartops_nb.server.sessions import Sessions, install_secret
from tests.unit.server.test_browser_security import ALERT, BASE, PORT, TOKEN, Intake, archive  # noqa: F401

POLICY = """\
roles:
  approver: {users: [alice, dave]}
  responder: {users: [bob]}
approvals:
  - action: terminate-idle-connections
    two_person: true
"""


def app(archive, tmp_path, *, with_policy=True):
    rules = policy.parse(POLICY, "policy.yaml") if with_policy else policy.NONE
    sessions = Sessions(install_secret(tmp_path / "state"), port=PORT)
    intake = Intake()
    pages = web.Pages(open_archive(archive["folder"]), TOKEN, sessions=sessions, policy=rules)
    return TestClient(serve.make_app(intake, TOKEN, pages), base_url=BASE, follow_redirects=False), intake


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_the_alertmanager_credential_posts_alerts_but_cannot_approve_or_read(archive, tmp_path):
    client, intake = app(archive, tmp_path)
    assert client.post("/alerts", json=ALERT, headers=bearer(TOKEN)).status_code == 202 and intake.handled
    r = client.post(f"/approvals/{archive['plan']}", json={"operator": "mallory"}, headers=bearer(TOKEN))
    assert r.status_code == 403 and "permission 'approve'" in r.json()["error"]
    assert client.get("/incidents", headers=bearer(TOKEN)).status_code == 403
    assert open_archive(archive["folder"]).plan_store().get(archive["plan"]).state == "pending"


def test_without_a_policy_the_serve_token_stays_the_shared_admin(archive, tmp_path):
    client, _ = app(archive, tmp_path, with_policy=False)
    assert client.get("/incidents", headers=bearer(TOKEN)).status_code == 200


def test_a_role_that_may_not_is_403_naming_the_permission_and_nothing_is_done(archive, tmp_path):
    token, _ = Tokens(open_archive(archive["folder"])).create("bob", "viewer")
    client, _ = app(archive, tmp_path)
    r = client.post(f"/approvals/{archive['plan']}", json={}, headers=bearer(token))
    assert r.status_code == 403 and "bob (responder) lacks the permission 'approve'" in r.json()["error"]
    assert open_archive(archive["folder"]).plan_store().get(archive["plan"]).state == "pending"


def test_revoked_expired_or_unknown_tokens_are_401_and_never_echoed(archive, tmp_path):
    tokens = Tokens(open_archive(archive["folder"]))
    token, row = tokens.create("alice", "approver")
    tokens.revoke(row["id"])
    client, _ = app(archive, tmp_path)
    for given in (token, "smo_not-a-token", "wrong"):
        r = client.post(f"/approvals/{archive['plan']}", json={}, headers=bearer(given))
        assert r.status_code == 401 and given not in r.text
        page = client.get(f"/incidents?token={given}")
        assert page.status_code == 401 and given not in page.text
    assert client.post(f"/approvals/{archive['plan']}", json={}).status_code == 401


def test_two_person_rule_over_http_first_is_1_of_2_same_person_refused(archive, tmp_path):
    alice, _ = Tokens(open_archive(archive["folder"])).create("alice", "viewer")  # the policy makes her an approver
    client, _ = app(archive, tmp_path)
    r = client.post(f"/approvals/{archive['plan']}", json={"operator": "someone-else"}, headers=bearer(alice))
    assert r.status_code == 202 and r.json()["status"] == "pending" and "1 of 2" in r.json()["reason"]
    r = client.post(f"/approvals/{archive['plan']}", json={}, headers=bearer(alice))
    assert r.status_code == 409 and "already approved it" in r.json()["reason"]
    plan = open_archive(archive["folder"]).plan_store().get(archive["plan"])
    assert plan.status == plans.PENDING
    assert [(d["name"], d["how"], d["issuer"]) for d in plan.decisions] == [("alice", "token", "smartops-token")]


def test_a_personal_token_signs_in_the_page_names_the_person_and_hides_the_name_field(archive, tmp_path):
    alice, _ = Tokens(open_archive(archive["folder"])).create("alice", "approver")
    client, _ = app(archive, tmp_path)
    r = client.get(f"/incidents/INC-sec?token={alice}")
    assert r.status_code == 303 and alice not in r.headers["location"]
    page = client.get("/incidents/INC-sec")
    assert page.status_code == 200 and "as <b>alice</b> (token)" in page.text and alice not in page.text
    assert 'name="operator" required></label>\n    <label>type the target' not in page.text


def test_an_unreachable_provider_at_sign_in_is_a_page_saying_so_while_alerts_and_healthz_work(archive, tmp_path):
    import socket

    from smartops_nb.server.oidc import Provider

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    sessions = Sessions(install_secret(tmp_path / "state"), port=PORT)
    intake = Intake()
    pages = web.Pages(open_archive(archive["folder"]), TOKEN, sessions=sessions, policy=policy.parse(POLICY, "policy.yaml"),
                       oidc=Provider(dead, "smartops", timeout=1.0))
    client = TestClient(serve.make_app(intake, TOKEN, pages), base_url=BASE, follow_redirects=False)
    r = client.get("/incidents/INC-sec")
    assert r.status_code == 303 and r.headers["location"].startswith("/signin?next=")
    page = client.get(r.headers["location"])
    assert page.status_code == 503 and "is unreachable" in page.text and "Alerts are still received" in page.text
    assert client.get("/healthz").status_code == 200
    assert client.post("/alerts", json=ALERT, headers=bearer(TOKEN)).status_code == 202 and intake.handled
    assert client.get("/signin/callback?state=forged&code=x").status_code == 401


@pytest.mark.parametrize("peer, trusted", [("10.1.2.3", True), ("192.168.7.7", False)])
def test_proxy_headers_name_the_person_only_from_a_trusted_proxy(archive, tmp_path, peer, trusted):
    sessions = Sessions(install_secret(tmp_path / "state"), port=PORT)
    proxies = ["10.0.0.0/8"]
    pages = web.Pages(open_archive(archive["folder"]), TOKEN, sessions=sessions, policy=policy.parse(POLICY, "policy.yaml"),
                       trusted_proxies=proxies)
    app = serve.proxied(serve.make_app(Intake(), TOKEN, pages), proxies)
    client = TestClient(app, base_url=BASE, follow_redirects=False, client=(peer, 40000))
    headers = {"X-Forwarded-User": "alice", "X-Forwarded-Email": "alice@example.com", "X-Forwarded-Groups": "sre"}
    r = client.post(f"/approvals/{archive['plan']}", json={}, headers=headers)
    plan = open_archive(archive["folder"]).plan_store().get(archive["plan"])
    if trusted:
        assert r.status_code == 202 and "1 of 2" in r.json()["reason"]
        assert [(d["subject"], d["issuer"], d["how"]) for d in plan.decisions] == [("alice", "proxy", "proxy")]
    else:
        assert r.status_code == 401 and plan.decisions == []


def _lesson(client, token, text):
    import re

    page = client.get(f"/incidents/INC-sec?token={token}")
    assert page.status_code == 303  # signed in: a session cookie
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get("/incidents/INC-sec").text).group(1)
    return client.post("/incidents/INC-sec/lessons", data={"csrf": csrf, "text": text, "operator": "mallory"})


def test_a_lesson_is_a_responders_comment_and_names_the_person_not_the_typed_name(archive, tmp_path):
    from smartops_nb.records.checklist_store import Store

    tokens = Tokens(open_archive(archive["folder"]))
    viewer, _ = tokens.create("carol", "viewer")
    responder, _ = tokens.create("bob", "viewer")  # the policy makes bob a responder
    refused = _lesson(app(archive, tmp_path)[0], viewer, "carol's lesson")
    assert refused.status_code == 403 and "lacks the permission &#39;comment&#39;" in refused.text
    kept = _lesson(app(archive, tmp_path)[0], responder, "watch the pool's idle sessions")
    assert kept.status_code == 303 and "kept+for+runbook" in kept.headers["location"]
    (lesson,) = Store(open_archive(archive["folder"])).lessons(incident_id="INC-sec")
    assert lesson["text"] == "watch the pool's idle sessions" and "bob" in lesson["by_whom"]
    assert "mallory" not in lesson["by_whom"]
