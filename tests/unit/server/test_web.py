"""Every route of the pages (:data:`smartops_nb.server.web.ROUTES`) through Starlette's TestClient.

One app for the module (serve's real app in token mode over a folder archive holding one record and
three pending plans; the webhook's intake a recorder), a fresh client per test. Nothing here runs a
runbook: every approval is refused before it would run, or only denies.
"""
from __future__ import annotations

import re
from types import SimpleNamespace
from urllib.parse import unquote_plus

import pytest
from starlette.testclient import TestClient

from smartops_nb.records.archive import open_archive
from smartops_nb.server import serve, web
from smartops_nb.server.sessions import Sessions, install_secret
from tests.unit.server.test_browser_security import BASE, PORT, TOKEN, Intake, seeded

AUTH = {"Authorization": f"Bearer {TOKEN}"}
CROSS = {"Origin": "http://attacker.example", "Sec-Fetch-Site": "cross-site"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("web")
    archive = seeded(tmp / "incidents", plan_count=3)
    sessions = Sessions(install_secret(tmp / "state"), port=PORT)
    app = serve.make_app(Intake(), TOKEN, web.Pages(open_archive(archive["folder"]), TOKEN, sessions=sessions))
    return SimpleNamespace(app=app, sessions=sessions, **archive)


def client(site, **kw) -> TestClient:
    return TestClient(site.app, base_url=BASE, follow_redirects=False, **kw)


def signed_in(site) -> TestClient:
    """A browser with a session cookie (signed in once with ``?token=``)."""
    c = client(site)
    assert c.get(f"/incidents?token={TOKEN}").status_code == 303 and c.cookies.get(site.sessions.cookie)
    return c


def csrf_of(c: TestClient) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', c.get("/incidents/INC-sec").text).group(1)


def state(site, plan_id) -> str:
    return open_archive(site.folder).plan_store().get(plan_id).state


def said(r) -> str:
    """The message a form's redirect carries back to the incident page."""
    assert r.status_code == 303, r.text
    return unquote_plus(r.headers["location"].partition("?m=")[2])


PAGES = ["/", "/incidents", "/incidents/INC-sec", "/incidents/INC-sec/postmortem", "/records/{rec}",
         "/records/{rec}/view", "/records/{rec}/download"]


def pages(site) -> list[str]:
    return [p.format(rec=site.record) for p in PAGES]


# -- GET pages: credentials ------------------------------------------------------------------------
@pytest.mark.parametrize("page", PAGES)
def test_every_page_needs_a_credential(site, page):
    path, c = page.format(rec=site.record), client(site)
    for headers in ({}, {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": "Basic x"}):
        r = c.get(path, headers=headers)
        assert r.status_code == 401 and r.headers["content-type"].startswith("text/html"), (path, headers)
        assert "Sign in" in r.text and "INC-sec" not in r.text
    assert c.get(path, params={"token": "wrong"}).status_code == 401
    assert c.get(path, headers=AUTH).status_code == (303 if path == "/" else 200)


def test_a_token_in_the_address_starts_a_session_and_leaves_the_address(site):
    c = client(site)
    r = c.get(f"/incidents/INC-sec?token={TOKEN}&m=hello")
    assert r.status_code == 303 and r.headers["location"] == "/incidents/INC-sec?m=hello"
    assert TOKEN not in r.headers["set-cookie"] and site.sessions.cookie in r.headers["set-cookie"]
    for path in pages(site):
        assert c.get(path).status_code == (303 if path == "/" else 200), path  # the cookie alone
    other = client(site, cookies={site.sessions.cookie: "forged.0000"})
    assert other.get("/incidents").status_code == 401


# -- GET pages: what each answers --------------------------------------------------------------------
def test_each_page_answers_its_content(site):
    c, rec = client(site, headers=AUTH), site.record
    r = c.get("/")
    assert r.status_code == 303 and r.headers["location"] == "/incidents"
    r = c.get("/incidents")
    assert r.headers["content-type"].startswith("text/html") and "INC-sec" in r.text
    assert "INC-sec" not in c.get("/incidents", params={"runbook": "no-such-runbook"}).text
    r = c.get("/incidents/INC-sec")
    assert "INC-sec" in r.text and site.plan in r.text and 'name="csrf"' in r.text
    r = c.get("/incidents/INC-sec/postmortem")
    assert r.headers["content-type"].startswith("text/markdown") and "INC-sec" in r.text
    r = c.get(f"/records/{rec}")
    assert r.headers["content-type"].startswith("text/html") and rec in r.text
    r = c.get(f"/records/{rec}/view")
    assert r.headers["content-security-policy"] == web.RECORD_CSP and r.headers["content-type"].startswith("text/html")
    r = c.get(f"/records/{rec}/download")
    assert r.headers["content-type"] == "application/x-ipynb+json"
    assert r.headers["content-disposition"] == f'attachment; filename="{rec}"' and r.json()["metadata"]["smartops"]
    assert c.head("/incidents").status_code == 200


@pytest.mark.parametrize("query", ["since=garbage", "since=-3d", 'q="unclosed'])
def test_a_bad_filter_is_a_400_page_saying_why(site, query):
    r = client(site, headers=AUTH).get(f"/incidents?{query}")
    assert r.status_code == 400 and r.headers["content-type"].startswith("text/html"), r.text
    assert "Bad filter" in r.text


@pytest.mark.parametrize("path", ["/incidents/INC-none", "/incidents/INC-none/postmortem",
                                  "/records/no-such-record.ipynb", "/records/no-such-record.ipynb/view",
                                  "/records/no-such-record.ipynb/download", "/records/..%2Fstate%2Fserve.secret"])
def test_what_is_not_there_is_a_404_page(site, path):
    r = client(site, headers=AUTH).get(path)
    assert r.status_code == 404, r.text
    assert "serve.secret" not in r.text or "no record" in r.text


# -- POST forms: CSRF, Origin, what they do ----------------------------------------------------------
FORMS = ["/plans/{plan}/approve", "/plans/{plan}/deny", "/incidents/INC-sec/lessons", "/signout"]


@pytest.mark.parametrize("form", FORMS)
def test_a_form_without_its_csrf_token_or_from_another_origin_does_nothing(site, form):
    path, c = form.format(plan=site.plan), signed_in(site)
    data = {"operator": "mallory", "confirm": site.plan, "reason": "r", "text": "t"}
    for fields in (data, {**data, "csrf": "0" * 64}):
        r = c.post(path, data=fields)
        assert r.status_code == 403 and "CSRF" in r.text, (path, fields)
    r = c.post(path, data={**data, "csrf": csrf_of(c)}, headers=CROSS)
    assert r.status_code == 403 and r.headers["content-type"] == "application/json"
    assert state(site, site.plan) == "pending" and c.get("/incidents").status_code == 200  # still signed in


@pytest.mark.parametrize("form", FORMS[:3])
def test_a_form_needs_a_credential_before_anything(site, form):
    r = client(site).post(form.format(plan=site.plan), data={"csrf": "x"})
    assert r.status_code == 401 and r.headers["content-type"].startswith("text/html")


def test_an_approval_form_needs_the_target_typed(site):
    c = signed_in(site)
    r = c.post(f"/plans/{site.plan}/approve", data={"csrf": csrf_of(c), "operator": "alice", "confirm": "nope"})
    assert said(r).startswith("not approved: type the target") and state(site, site.plan) == "pending"
    assert r.headers["location"].startswith("/incidents/INC-sec?")


def test_a_denial_needs_a_reason_and_then_denies(site):
    c, plan = signed_in(site), site.plans[1]
    r = c.post(f"/plans/{plan}/deny", data={"csrf": csrf_of(c), "operator": "alice"})
    assert said(r).startswith("refused: a denial needs") and state(site, plan) == "pending"
    r = c.post(f"/plans/{plan}/deny", data={"csrf": csrf_of(c), "operator": "alice", "reason": "not now"})
    assert said(r) == f"plan {plan} denied by alice: not now" and state(site, plan) == "denied"


def test_a_decision_on_an_unknown_plan_is_a_404_page(site):
    c = signed_in(site)
    r = c.post("/plans/no-such-plan/deny", data={"csrf": csrf_of(c), "operator": "a", "reason": "r"})
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")


def test_a_verb_other_than_approve_or_deny_is_a_404_and_decides_nothing(site):
    c, plan = signed_in(site), site.plan
    for verb in ("Deny", "delete", "approve.json", "deny%20", "%ED%A0%80", "%0Adeny", "a" * 10_000):
        r = c.post(f"/plans/{plan}/{verb}", data={"csrf": csrf_of(c), "operator": "a", "reason": "r", "confirm": plan})
        assert r.status_code == 404 and state(site, plan) == "pending", (verb, r.status_code)


def test_a_lesson_is_kept_or_refused_in_one_line(site):
    c = signed_in(site)
    r = c.post("/incidents/INC-sec/lessons", data={"csrf": csrf_of(c), "text": "", "operator": "alice"})
    assert said(r).startswith("not kept: ")
    r = c.post("/incidents/INC-sec/lessons", data={"csrf": csrf_of(c), "text": "watch the pool", "operator": "al"})
    assert re.fullmatch(r"lesson \S+ kept for runbook db-pool-exhausted", said(r))


def test_sign_out_ends_the_session(site):
    c = signed_in(site)
    r = c.post("/signout", data={"csrf": csrf_of(c)})
    assert r.status_code == 303 and r.headers["location"] == "/incidents"
    assert f'{site.sessions.cookie}=""' in r.headers["set-cookie"] and "Max-Age=0" in r.headers["set-cookie"]
    assert client(site).post("/signout", data={"csrf": "x"}).status_code == 403  # no session: no CSRF token holds


# -- POST /approvals/{plan}: automation's approval ---------------------------------------------------
def test_the_approval_api_needs_a_bearer_token_not_a_cookie(site):
    for c in (client(site), signed_in(site), client(site, headers={"Authorization": "Bearer wrong"})):
        r = c.post(f"/approvals/{site.plan}", json={"operator": "alice"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == 'Bearer realm="smartops"'
        assert "error" in r.json()
    assert state(site, site.plan) == "pending"


@pytest.mark.parametrize("body, status", [(b"{not json", 400), (b'{"operator": ""}', 400), (b"[]", 400)])
def test_a_bad_approval_body_is_400_and_nothing_done(site, body, status):
    r = client(site, headers=AUTH).post(f"/approvals/{site.plan}", content=body)
    assert r.status_code == status and r.json()["error"]
    assert state(site, site.plan) == "pending"


def test_an_unknown_or_decided_plan_is_refused_by_the_api(site):
    c, plan = client(site, headers=AUTH), site.plans[2]
    r = c.post("/approvals/no-such-plan", json={"operator": "alice"})
    assert r.status_code == 404 and r.json()["status"] == "refused" and r.json()["plan"] == "no-such-plan"
    browser = signed_in(site)
    browser.post(f"/plans/{plan}/deny", data={"csrf": csrf_of(browser), "operator": "bob", "reason": "no"})
    r = c.post(f"/approvals/{plan}", json={"operator": "alice"})
    assert r.status_code == 409 and r.json()["status"] == "refused" and state(site, plan) == "denied"
    assert c.post(f"/approvals/{site.plan}", json={"operator": "a"}, headers=CROSS).status_code == 403


# -- sign-in with an identity provider -----------------------------------------------------------------
def test_without_an_identity_provider_sign_in_is_a_404_page(site):
    for path in ("/signin", "/signin/callback?state=x&code=y"):
        r = client(site).get(path)
        assert r.status_code == 404 and "no identity provider configured" in r.text


@pytest.fixture(scope="module")
def with_provider(site, tmp_path_factory):
    """The same archive behind a real OIDC client whose provider cannot be reached (a closed port)."""
    import socket

    from smartops_nb.server.oidc import Provider

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connecting is refused at once
    provider = Provider(f"http://127.0.0.1:{port}", "smartops", timeout=5)
    sessions = Sessions(install_secret(tmp_path_factory.mktemp("oidc")), port=PORT)
    pages = web.Pages(open_archive(site.folder), TOKEN, sessions=sessions, oidc=provider, public_url="https://ops.example.com")
    return serve.make_app(Intake(), TOKEN, pages, public_url="https://ops.example.com")


def test_with_a_provider_a_page_sends_the_browser_to_sign_in(with_provider):
    c = TestClient(with_provider, base_url=BASE, follow_redirects=False)
    r = c.get("/incidents/INC-sec")
    assert r.status_code == 303 and r.headers["location"] == "/signin?next=%2Fincidents%2FINC-sec"
    assert c.post("/incidents/INC-sec/lessons", data={}).status_code == 401  # a form is not redirected
    assert c.get("/incidents", headers=AUTH).status_code == 200  # the serve token still reads


def test_an_unreachable_provider_is_a_503_page_and_a_stale_callback_401(with_provider):
    c = TestClient(with_provider, base_url=BASE, follow_redirects=False)
    r = c.get("/signin", params={"next": "//attacker.example"})
    assert r.status_code == 503 and "Sign-in unavailable" in r.text and "Alerts are still received" in r.text
    r = c.get("/signin/callback", params={"state": "unknown", "code": "c"})
    assert r.status_code == 401 and "Sign-in refused" in r.text and not c.cookies


def test_the_providers_callback_is_under_the_public_url_else_the_address_asked(site, with_provider):
    from starlette.requests import Request

    def asked(app):
        return Request({"type": "http", "app": app, "scheme": "http", "server": ("127.0.0.1", PORT),
                        "path": "/signin", "root_path": "", "headers": [(b"host", f"127.0.0.1:{PORT}".encode())]})

    assert web.callback_url(asked(with_provider)) == "https://ops.example.com/signin/callback"
    assert web.callback_url(asked(site.app)) == f"http://127.0.0.1:{PORT}/signin/callback"


# -- the table itself --------------------------------------------------------------------------------
def test_a_wrong_method_is_405_or_the_webhooks_404(site):
    c = client(site, headers=AUTH)
    assert c.put("/incidents").status_code == 405 and c.delete(f"/plans/{site.plan}/approve").status_code == 405
    for path in (f"/approvals/{site.plan}", "/signout", f"/plans/{site.plan}/deny"):
        r = c.get(path)  # a GET falls through to the webhook's catch-all
        assert r.status_code == 404 and r.json()["error"].startswith("not found")


def test_every_route_refuses_a_foreign_host_and_every_post_a_foreign_page(site):
    c = client(site, headers=AUTH)
    for route in web.ROUTES:
        path = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: {"verb": "deny"}.get(m.group(1), "x"), route.path)
        for method in route.methods - {"HEAD"}:
            assert c.request(method, path, headers={"Host": "attacker.example"}).status_code == 421, path
            if method == "POST":
                assert c.post(path, headers={"Sec-Fetch-Site": "same-site"}).status_code == 403, path
    assert state(site, site.plan) == "pending"
