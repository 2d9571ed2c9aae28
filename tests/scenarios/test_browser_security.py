"""`smartops serve` in loopback (no-token) mode against pages of other origins, in real Chromium.

A real `smartops serve` process (no token, loopback, in-process mode) serves an archive holding a real
incident: the sandbox's connection leak, investigated headless, its plan pending. An "attacker" web
server on another loopback port serves pages that try what issue 20 found working: a form that
auto-submits an approval (with a CSRF token as if every install shared one), a ``no-cors`` fetch with a
``text/plain`` body to ``/alerts``, and (Chromium's host resolver mapping a foreign name to 127.0.0.1)
a DNS-rebound read of the incident list. Each is refused and changes nothing; the Approve button on
serve's own page still carries the plan out.
"""
from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import os
import subprocess
import sys
import threading
import urllib.request

import pytest
import yaml

from smartops_nb.records.archive import open_archive
from smartops_nb.waiting import until
from tests.conftest import REPO, free_port, require, stop_process
from tests.fixtures.leak import LEAK_IDLE_MINUTES
from tests.fixtures.web import CHROMIUM, FLAGS, SHOTS, investigated_leak

ROUTES = {"routes": [{"alertname": "PostgresConnectionsNearLimit", "runbook": "db-pool-exhausted",
                      "parameters": {"idle_minutes": LEAK_IDLE_MINUTES}}]}
ALERT = {"version": "4", "status": "firing", "receiver": "smartops", "groupKey": "{}", "truncatedAlerts": 0,
         "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
         "alerts": [{"status": "firing", "labels": {"alertname": "PostgresConnectionsNearLimit"}, "annotations": {},
                     "startsAt": "2026-11-26T14:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "evil1"}]}
#: The CSRF token of every loopback install before issue 20: HMAC of a constant, computable by anyone.
OLD_LOOPBACK_CSRF = hmac.new(b"loopback", b"smartops-csrf", hashlib.sha256).hexdigest()
REBOUND = "rebind.attacker.example"


@pytest.fixture(scope="module")
def incident(sandbox, tmp_path_factory):
    """A confirmed leak with its plan pending, in a folder archive."""
    with investigated_leak(sandbox, tmp_path_factory.mktemp("browser-security") / "incidents", "INC-xsite") as inc:
        yield inc


class Serve:
    """`smartops serve` without a token on a free loopback port, its own state folder."""

    def __init__(self, tmp, incident, extra: tuple = (), env: dict | None = None):
        self.port, self.archive = free_port(), incident["archive"]
        (tmp / "routes.yaml").write_text(yaml.safe_dump(ROUTES))
        base = {k: v for k, v in incident["params"].items() if k != "incident_id"}
        (tmp / "base.yaml").write_text(yaml.safe_dump(base))
        self.log = tmp / "serve.log"
        env = {**os.environ, "SMARTOPS_SERVE_TOKEN": "", "SMARTOPS_QUEUE": "", "SMARTOPS_STATE_DIR": str(tmp / "state"),
               **(env or {})}
        cmd = [sys.executable, "-m", "smartops_nb.cli", "serve", "--port", str(self.port), "--routes",
               str(tmp / "routes.yaml"), "-f", str(tmp / "base.yaml"), "--archive", str(self.archive), "--warm", "0",
               "--workers", "1", *extra]
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=open(self.log, "w"),
                                     start_new_session=True)
        if not until(self._up, timeout=60, interval=0.2):
            self.stop()
            raise AssertionError("serve did not come up:\n" + self.log.read_text())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _up(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()
        try:
            return bool(self.health())
        except OSError:
            return False

    def health(self) -> dict:
        with urllib.request.urlopen(self.url + "/healthz", timeout=5) as r:
            return json.loads(r.read())

    def stop(self) -> int:
        return stop_process(self.proc, 60, what="serve", log=self.log)


@pytest.fixture(scope="module")
def serve(incident, tmp_path_factory):
    s = Serve(tmp_path_factory.mktemp("serve"), incident)
    yield s
    assert s.stop() == 0


class Attacker:
    """Another local origin: a web server on its own loopback port serving the pages put in ``pages``."""

    def __init__(self):
        pages = self.pages = {}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = pages.get(self.path, "not found").encode()
                self.send_response(200 if self.path in pages else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="attacker", daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def attacker():
    a = Attacker()
    yield a
    a.close()


@pytest.fixture(scope="module")
def browser(serve):
    require("chromium", CHROMIUM.is_file(), "apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:  # a foreign name resolving to loopback: what DNS rebinding achieves
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                               args=[*FLAGS, f"--host-resolver-rules=MAP {REBOUND} 127.0.0.1"])
        try:
            yield b
        finally:
            b.close()


def _shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_a_form_auto_submitted_from_another_local_port_does_not_approve(serve, incident, attacker, browser):
    plan = incident["plan"]
    attacker.pages["/approve.html"] = f"""<!doctype html><body>
      <form id="f" method="post" action="{serve.url}/plans/{plan['id']}/approve">
        <input name="csrf" value="{OLD_LOOPBACK_CSRF}"><input name="operator" value="mallory">
        <input name="confirm" value="{plan['id']}"></form>
      <script>document.getElementById("f").submit()</script></body>"""
    page = browser.new_page()
    with page.expect_response(lambda r: r.url.endswith("/approve") and r.request.method == "POST",
                              timeout=60_000) as answer:
        page.goto(attacker.url + "/approve.html")
    assert answer.value.status == 403, answer.value.status  # before: a 303 to the incident, the plan executed
    page.wait_for_load_state()
    _shot(page, "xsite-approve-refused")
    page.close()
    assert open_archive(incident["archive"]).plan_store().get(plan["id"]).state == "pending"


def test_a_no_cors_text_plain_post_to_alerts_queues_nothing(serve, incident, attacker, browser):
    before = sorted(p.name for p in incident["archive"].glob("*.ipynb"))
    attacker.pages["/alert.html"] = "<!doctype html><title>innocent</title>"
    page = browser.new_page()
    page.goto(attacker.url + "/alert.html")
    with page.expect_response(lambda r: r.url.endswith("/alerts"), timeout=60_000) as answer:
        sent = page.evaluate("""([url, body]) => fetch(url, {method: "POST", mode: "no-cors", body,
                                   headers: {"Content-Type": "text/plain"}}).then(r => r.type)""",
                             [serve.url + "/alerts", json.dumps(ALERT)])
    assert sent == "opaque"  # the browser sent it; the page cannot read the answer
    assert answer.value.status in (403, 415)
    page.close()
    health = serve.health()  # the answer comes after the queueing decision: nothing can still be on its way
    assert (health["queued"], health["running"], health["finished"]) == (0, 0, 0), health
    assert sorted(p.name for p in incident["archive"].glob("*.ipynb")) == before


def test_a_dns_rebound_name_gets_no_incident_list(serve, incident, browser):
    page = browser.new_page()
    answer = page.goto(f"http://{REBOUND}:{serve.port}/incidents")
    assert answer.status == 421
    assert "INC-xsite" not in page.content() and incident["plan"]["id"] not in page.content()
    page.close()


def test_the_approve_button_on_serves_own_page_still_works(serve, incident, browser):
    plan = incident["plan"]
    page = browser.new_page()
    page.goto(f"{serve.url}/incidents/INC-xsite")
    card = page.locator(f"#plan-{plan['id']}")
    card.locator("form[action$='/approve'] input[name=operator]").fill("alice")
    card.locator("form[action$='/approve'] input[name=confirm]").fill(plan["target"])
    with page.expect_response(lambda r: r.url.endswith("/approve") and r.request.method == "POST",
                              timeout=240_000) as answer:
        card.locator("form[action$='/approve'] button").click()
    assert answer.value.status == 303, (answer.value.status, answer.value.request.all_headers(), serve.log.read_text())
    page.wait_for_selector("#message", timeout=60_000)
    stored = open_archive(incident["archive"]).plan_store().get(plan["id"])
    assert "executed" in page.inner_text("#message"), (page.inner_text("#message"), stored)
    assert stored.state == "executed" and stored.decided_by == "alice", stored
    _shot(page, "same-origin-approved")
    page.close()
