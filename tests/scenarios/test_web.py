"""The archive in a real browser: incidents, an incident's timeline, a record with its charts, approving
a plan from the page — Playwright driving Chromium against the pages `smartops serve` serves.

The incident is real (the sandbox's connection leak, a headless run, its plan); a hostile log line
and a hostile alert value are planted to show that nothing from a system under investigation can run
script in the viewer's browser. Screenshots go to ``test-output/browser/``.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from smartops_nb.records.archive import open_archive
from tests.fixtures.web import CHROMIUM, FLAGS, SHOTS, investigated_leak, serve_web

TOKEN = "web-test-token-5f1c2e"
HOSTILE_LOG = "<img src=x onerror=alert('log')><script>alert('log2')</script> connection pool exhausted"
HOSTILE_ENV = "prod<img src=x onerror=alert('env')>"


@pytest.fixture(scope="module")
def incident(sandbox, tmp_path_factory):
    """A confirmed leak with a pending plan, a second plan already approved, hostile text planted."""
    def plant(sandbox):
        with open(sandbox.api_log, "a") as log:  # what a compromised or careless app could print
            log.write(f"2026-11-29 12:00:00 ERROR {HOSTILE_LOG}\n")

    with investigated_leak(sandbox, tmp_path_factory.mktemp("web") / "incidents", "INC-web", plant,
                           environment=HOSTILE_ENV) as incident:
        yield incident


@pytest.fixture(scope="module")
def server(incident):
    with serve_web(open_archive(incident["archive"]), TOKEN) as url:
        yield url


@pytest.fixture(scope="module")
def browser(server, tmp_path_factory):
    from tests.fixtures.web import chromium

    with chromium() as b:
        yield b


def _page(browser, viewport=(1280, 900)):
    ctx = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    page = ctx.new_page()
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    return ctx, page, dialogs


def _shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _get(url, **headers):
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_every_page_needs_the_token(server, incident):
    name = incident["record"].path.name
    for path in ("/incidents", "/incidents/INC-web", f"/records/{name}", f"/records/{name}/view",
                 f"/records/{name}/download", "/incidents/INC-web/postmortem"):
        status, body = _get(server + path)
        assert status == 401, path
        assert HOSTILE_LOG not in body
    assert _get(server + "/incidents", Authorization=f"Bearer {TOKEN}")[0] == 200


def test_the_incident_list_timeline_and_record_in_the_browser(server, incident, browser):
    ctx, page, dialogs = _page(browser)
    page.goto(f"{server}/incidents?token={TOKEN}")
    assert "token=" not in page.url  # signed in: the token went into an HttpOnly cookie
    cookie = next(c for c in ctx.cookies() if c["name"].startswith("smartops_session_"))
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and TOKEN not in cookie["value"]
    row = page.locator("tr", has_text="INC-web")
    assert row.count() == 1 and "idle-connection-leak" in row.inner_text()
    assert incident["plan"]["id"] in row.inner_text()
    _shot(page, "web-incidents")

    page.click("text=INC-web")
    page.wait_for_selector(f"#plan-{incident['plan']['id']}")
    timeline = page.locator("ol.timeline li").all_inner_texts()
    assert timeline[0].split()[0] <= timeline[-1].split()[0]  # in time order
    assert any("investigation" in t and "CONFIRMED" in t for t in timeline)
    _shot(page, "web-incident")

    page.click("a[href^='/records/']")
    page.wait_for_selector("#integrity")
    assert "verified" in page.inner_text("#integrity")
    frame = page.frame_locator("iframe.record")
    frame.locator("img").first.wait_for()
    widths = [frame.locator("img").nth(i).evaluate("i => i.naturalWidth") for i in range(frame.locator("img").count())]
    assert widths and all(w > 100 for w in widths)  # the charts, as real images
    _shot(page, "web-record")
    assert not dialogs
    # nothing planted became an element: no injected img with onerror, no script, in the page or the frame
    for where in (page, page.frame_locator("iframe.record")):
        assert where.locator("img[onerror]").count() == 0
        assert where.locator("script").count() == 0
    assert HOSTILE_LOG.split(" connection")[0] in frame.locator("body").inner_text()  # shown as text
    ctx.close()


def test_on_a_phone_the_verdict_comes_first(server, incident, browser):
    ctx, page, _ = _page(browser, viewport=(390, 844))
    page.goto(f"{server}/incidents/INC-web?token={TOKEN}")
    verdict = page.locator(".verdict").bounding_box()
    assert verdict["width"] <= 390 and verdict["y"] < 300
    _shot(page, "web-incident-phone")
    ctx.close()


def test_a_forged_post_is_refused_and_nothing_is_done(server, incident):
    import http.cookiejar

    plan = incident["plan"]
    signed_in = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    signed_in.open(f"{server}/incidents?token={TOKEN}", timeout=20).read()  # a session cookie, as a browser's
    req = urllib.request.Request(f"{server}/plans/{plan['id']}/approve", method="POST",
                                 data=b"operator=mallory&confirm=" + plan["id"].encode(),
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    with pytest.raises(urllib.error.HTTPError) as refused:  # signed in, but no CSRF token
        signed_in.open(req, timeout=20)
    assert refused.value.code == 403
    # the JSON approval needs the bearer token itself, not a browser's cookie
    req = urllib.request.Request(f"{server}/approvals/{plan['id']}", method="POST", data=b'{"operator": "m"}')
    with pytest.raises(urllib.error.HTTPError) as refused:
        signed_in.open(req, timeout=20)
    assert refused.value.code == 401
    assert open_archive(incident["archive"]).plan_store().get(plan["id"]).state == "pending"


def test_approving_from_the_page_carries_the_plan_out_once(server, incident, browser):
    plan = incident["plan"]
    ctx, page, dialogs = _page(browser)
    page.goto(f"{server}/incidents/INC-web?token={TOKEN}")
    card = page.locator(f"#plan-{plan['id']}")
    card.locator("form[action$='/approve'] input[name=operator]").fill("alice")
    card.locator("form[action$='/approve'] input[name=confirm]").fill(plan["target"])
    card.locator("form[action$='/approve'] button").click()
    page.wait_for_selector("#message", timeout=240_000)
    stored = open_archive(incident["archive"]).plan_store().get(plan["id"])
    assert "executed" in page.inner_text("#message"), (page.inner_text("#message"), stored)
    assert stored.state == "executed" and stored.decided_by == "alice", stored
    _shot(page, "web-approved")
    # the page no longer offers it; a second approval (the API) is refused
    assert page.locator(f"#plan-{plan['id']}").count() == 0, page.inner_text("main")
    req = urllib.request.Request(f"{server}/approvals/{plan['id']}", method="POST", data=b'{"operator": "bob"}',
                                 headers={"Authorization": f"Bearer {TOKEN}"})
    with pytest.raises(urllib.error.HTTPError) as again:
        urllib.request.urlopen(req, timeout=60)
    answer = json.loads(again.value.read())
    assert again.value.code == 409 and "already carried out" in answer["reason"], answer
    assert not dialogs
    ctx.close()


def test_a_record_edited_on_disk_does_not_verify(server, incident, browser, tmp_path):
    path = incident["record"].path
    original = path.read_bytes()
    try:
        path.write_bytes(original.replace(b"connections", b"connectionz", 1))
        ctx, page, _ = _page(browser)
        page.goto(f"{server}/records/{path.name}?token={TOKEN}")
        assert "does not verify" in page.inner_text("#integrity")
        ctx.close()
    finally:
        path.write_bytes(original)


def test_the_links_in_notifications_open_the_incident_and_record_pages(server, incident):
    from smartops_nb.alerts import notify

    rec = incident["record"]
    pages = notify.links(notify.public_url({"notify": {"public_url": server}}), rec.summary, rec.path)
    assert set(pages) == {"incident", "record"}
    for url in pages.values():
        status, body = _get(url, Authorization=f"Bearer {TOKEN}")
        assert status == 200 and "INC-web" in body, url
    assert rec.path.name in _get(pages["record"], Authorization=f"Bearer {TOKEN}")[1]
