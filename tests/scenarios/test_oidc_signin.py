"""Signing in with the team's OpenID Connect provider (issue 24 step 2), in real Chromium.

A real provider on loopback (PyPI ``oidc-provider-mock``: discovery, JWKS, signed ID tokens; users and
their claims set with ``PUT /users/{sub}``), ``smartops serve --oidc-issuer`` with a policy file, and a
confirmed connection leak whose plan waits. bob (group dev) is refused with nothing done; alice (group
sre) approves and the plan and its record name her subject and issuer; sign-out ends the session; an
ID token not signed by the provider is refused.
"""
from __future__ import annotations

import json
import urllib.request

import pytest

from smartops_nb.records.archive import open_archive
from tests.fixtures.web import chromium, investigated_leak
from tests.scenarios.test_browser_security import Serve

POLICY = "roles:\n  approver: {groups: [sre]}\n  responder: {groups: [dev]}\n"


@pytest.fixture(scope="module")
def idp():
    oidc_provider_mock = pytest.importorskip("oidc_provider_mock")
    with oidc_provider_mock.run_server_in_thread(require_nonce=True) as server:
        url = f"http://127.0.0.1:{server.server_port}"
        for sub, groups in (("alice", ["sre"]), ("bob", ["dev"])):
            req = urllib.request.Request(f"{url}/users/{sub}", method="PUT", headers={"Content-Type": "application/json"},
                                         data=json.dumps({"preferred_username": sub, "groups": groups}).encode())
            urllib.request.urlopen(req, timeout=5).close()
        yield url


@pytest.fixture(scope="module")
def incident(sandbox, tmp_path_factory):
    with investigated_leak(sandbox, tmp_path_factory.mktemp("oidc") / "incidents", "INC-oidc") as inc:
        yield inc


@pytest.fixture(scope="module")
def serve(idp, incident, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve-oidc")
    (tmp / "policy.yaml").write_text(POLICY)
    s = Serve(tmp, incident, extra=("--policy", str(tmp / "policy.yaml"), "--oidc-issuer", idp,
                                    "--oidc-client-id", "smartops"),
              env={"SMARTOPS_OIDC_CLIENT_SECRET": "client-secret-1"})
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def sign_in(browser, serve, idp, sub):
    page = browser.new_context().new_page()
    page.goto(f"{serve.url}/incidents/INC-oidc")
    assert page.url.startswith(idp), page.url  # not signed in: sent to the provider
    page.fill("input[name=sub]", sub)
    page.click("button[type=submit]:has-text('Authorize')")
    page.wait_for_url(f"{serve.url}/incidents/INC-oidc*")
    assert f"as {sub}" in page.inner_text("body")
    return page


def approve(page, plan):
    form = page.locator(f"#plan-{plan['id']} form[action$='/approve']")
    form.locator("input[name=confirm]").fill(plan["id"])
    with page.expect_response(lambda r: r.url.endswith("/approve") and r.request.method == "POST",
                              timeout=300_000) as answer:
        form.locator("button").click()
    page.wait_for_load_state()
    return answer.value


def test_bob_is_refused_alice_approves_and_the_plan_and_record_name_her(serve, idp, incident, browser):
    plan = incident["plan"]
    bob = sign_in(browser, serve, idp, "bob")
    assert approve(bob, plan).status == 403 and "lacks the permission 'approve'" in bob.inner_text("body")
    assert open_archive(incident["archive"]).plan_store().get(plan["id"]).state == "pending"

    alice = sign_in(browser, serve, idp, "alice")
    assert approve(alice, plan).status == 303
    stored = open_archive(incident["archive"]).plan_store().get(plan["id"])
    assert stored.state == "executed", stored.reason
    assert [(d["name"], d["subject"], d["issuer"], d["how"]) for d in stored.decisions] == [
        ("alice", "alice", idp, "oidc")]
    assert f"alice (subject alice, issuer {idp}, via oidc)" in (incident["archive"] / stored.outcome_record).read_text()
    assert f"issuer {idp}" in alice.inner_text("body")

    alice.click("#signout button")
    alice.wait_for_load_state()
    alice.goto(f"{serve.url}/incidents")
    assert alice.url.startswith(idp), alice.url  # the session is over: sign in again
    assert "client-secret-1" not in serve.log.read_text()


def test_an_id_token_the_provider_did_not_sign_is_refused(idp):
    import time

    from joserfc import jwt
    from joserfc.jwk import RSAKey

    from smartops_nb.people.identity import Unauthorized
    from smartops_nb.server.oidc import Provider

    provider = Provider(idp, "smartops")
    now = int(time.time())
    forged = jwt.encode({"alg": "RS256"}, {"iss": idp, "aud": "smartops", "sub": "alice", "nonce": "n",
                                           "iat": now, "exp": now + 300, "groups": ["sre"]},
                        RSAKey.generate_key(2048))
    with pytest.raises(Unauthorized, match="refused"):
        provider.identity(forged, "n")
