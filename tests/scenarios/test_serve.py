"""`smartops serve` as Alertmanager sees it: a real server process, the real sandbox, real records.

Each test starts `smartops serve` on a free loopback port with a routes file of its own and a base
parameters file pointing at the session's sandbox, POSTs Alertmanager v4 payloads and waits
(bounded) for the records in the archive.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest
import yaml

from smartops_nb.waiting import until
from tests.conftest import REPO, free_port, post_alerts, stop_process
from tests.fixtures.leak import LEAK_IDLE_MINUTES, app_backends, inject_leak
from smartops_nb.records.archive import open_archive

TOKEN = "s3cret-token"
ROUTES = {
    "confirm_on_resolved": True,
    "routes": [
        {"alertname": "PostgresConnectionsNearLimit", "runbook": "db-pool-exhausted",
         "from_labels": {"environment": "env"}, "parameters": {"idle_minutes": LEAK_IDLE_MINUTES}},
        # a slow run without any fault: sampling the API for a few seconds
        {"alertname": "SlowProbe", "runbook": "high-latency", "parameters": {"sample_seconds": 6.0}},
    ],
}


EPISODE = "-20261126T140000Z"  # the alerts' startsAt, as incident ids end (one incident per firing episode)


def alert(name: str, fingerprint: str, status: str = "firing", **labels) -> dict:
    return {"status": status, "labels": {"alertname": name, **labels},
            "annotations": {"summary": f"{name} is {status}"}, "startsAt": "2026-11-26T14:00:00.123456789Z",
            "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-26T14:05:00Z",
            "generatorURL": "http://prometheus.local/graph?g0.expr=up", "fingerprint": fingerprint}


def payload(*alerts: dict, status: str = "firing") -> dict:
    first = alerts[0]["labels"]
    return {"version": "4", "groupKey": '{}:{alertname="%s"}' % first["alertname"], "truncatedAlerts": 0,
            "status": status, "receiver": "smartops", "groupLabels": {"alertname": first["alertname"]},
            "commonLabels": dict(first), "commonAnnotations": {}, "externalURL": "http://alertmanager.local",
            "alerts": list(alerts)}


class Server:
    def __init__(self, tmp: Path, base_params: dict, *args: str, token: str | None = TOKEN):
        self.port, self.archive, self.token = free_port(), tmp / "incidents", token
        (tmp / "routes.yaml").write_text(yaml.safe_dump(ROUTES))
        (tmp / "base.yaml").write_text(yaml.safe_dump(base_params))
        self.log = tmp / "serve.log"
        env = {**os.environ, "SMARTOPS_SERVE_TOKEN": ""}
        cmd = [sys.executable, "-m", "smartops_nb.cli", "serve", "--port", str(self.port), "--routes",
               str(tmp / "routes.yaml"), "-f", str(tmp / "base.yaml"), "--archive", str(self.archive),
               "--cell-timeout", "120", *(["--token", token] if token else []), *args]
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "w"), start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if self.health()["kernel_pool"]["ready"] >= 1 or "--warm" in args:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError("serve did not come up:\n" + self.log.read_text())

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def health(self) -> dict:
        with urllib.request.urlopen(self.url("/healthz"), timeout=5) as r:
            return json.loads(r.read())

    def post(self, body, token: str | None = "default") -> tuple[int, dict]:
        return post_alerts(self.url("/alerts"), body, self.token if token == "default" else token)

    def records(self) -> list[dict]:
        return [nbformat.read(p, as_version=4).metadata["smartops"] for p in sorted(self.archive.glob("*.ipynb"))]

    def wait_records(self, n: int, timeout: float = 120) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            recs = self.records()
            if len(recs) >= n and self.health()["running"] == 0 and self.health()["queued"] == 0:
                return recs
            time.sleep(0.3)
        raise AssertionError(f"{n} records expected, got {len(self.records())}:\n{self.log.read_text()}")

    def stop(self, timeout: float = 60) -> int:
        return stop_process(self.proc, timeout, what="serve", log=self.log)


@pytest.fixture
def base_params(sandbox_params) -> dict:
    return {**sandbox_params, "mode": "investigate"}


@pytest.fixture
def server(tmp_path, base_params):
    s = Server(tmp_path, base_params)
    yield s
    s.stop()


def leak_alert(fp: str = "a1b2c3", status: str = "firing") -> dict:
    return alert("PostgresConnectionsNearLimit", fp, status, env="sandbox-ci", severity="page")


@pytest.mark.timeout(240)
def test_firing_alert_gives_a_record_then_resolved_gives_a_confirming_run(server, healthy_sandbox):
    inject_leak(healthy_sandbox)
    status, body = server.post(payload(leak_alert()))
    assert status == 202 and body["accepted"] == [
        {"incident_id": "PostgresConnectionsNearLimit-a1b2c3" + EPISODE, "runbook": "db-pool-exhausted", "kind": "firing"}]
    (rec,) = server.wait_records(1)
    assert rec["status"] == "completed" and rec["diagnosis"]["confirmed"] is True
    assert set(rec["diagnosis"]["causes"]) == {"connections-near-limit", "idle-connection-leak"}
    assert rec["incident_id"] == "PostgresConnectionsNearLimit-a1b2c3" + EPISODE
    assert rec["detected_at"].startswith("2026-11-26T14:00:00") and rec["environment"] == "sandbox-ci"

    leaked = app_backends(healthy_sandbox)
    # Alertmanager sends "resolved" once the condition has cleared: the sandbox's heal returns once
    # PostgreSQL has ended the leaked sessions (a confirming run started before would still see them)
    healthy_sandbox.heal()
    assert not leaked & app_backends(healthy_sandbox)
    status, body = server.post(payload(leak_alert(status="resolved"), status="resolved"))
    assert status == 202 and body["accepted"][0]["kind"] == "resolved"
    recs = server.wait_records(2)
    # not by started_at: it has whole seconds, and a warm firing run and its confirming run can share one
    (confirming,) = [r for r in recs if r != rec]
    assert confirming["incident_id"] == rec["incident_id"]
    assert confirming["diagnosis"]["confirmed"] is False, [f["summary"] for f in confirming["findings"]]
    log = server.log.read_text()
    assert "alert received: PostgresConnectionsNearLimit firing" in log and "run finished" in log
    assert "(warm kernel)" in log


@pytest.mark.timeout(240)
def test_duplicate_firing_while_running_starts_one_run(server, healthy_sandbox):
    a = alert("SlowProbe", "dup1")
    assert server.post(payload(a))[0] == 202
    status, body = server.post(payload(a))
    assert status == 202 and body == {"deduplicated": [
        {"incident_id": "SlowProbe-dup1" + EPISODE, "runbook": "high-latency", "kind": "firing"}]}
    assert len(server.wait_records(1)) == 1
    time.sleep(1)
    assert len(server.records()) == 1
    assert "dedup: incident SlowProbe-dup1" + EPISODE in server.log.read_text()


@pytest.mark.timeout(240)
def test_full_queue_answers_503(tmp_path, base_params, healthy_sandbox):
    s = Server(tmp_path, base_params, "--workers", "1", "--queue", "1")
    try:
        assert s.post(payload(alert("SlowProbe", "q1")))[0] == 202
        assert until(lambda: s.health()["running"] >= 1, timeout=120, interval=0.1), s.log.read_text()
        assert s.post(payload(alert("SlowProbe", "q2")))[0] == 202   # waits in the queue
        status, body = s.post(payload(alert("SlowProbe", "q3")))
        assert status == 503 and body["rejected"][0]["reason"] == "queue full"
        assert "queue full" in s.log.read_text()
        assert len(s.wait_records(2)) == 2      # the two accepted ran; the refused one did not
    finally:
        s.stop()


@pytest.mark.parametrize("body", [
    b"not json", b"[]", json.dumps({"version": "3", "alerts": []}).encode(),
    json.dumps(payload(alert("SlowProbe", "x")) | {"alerts": [{"status": "firing", "labels": {}}]}).encode(),
    json.dumps(payload({**alert("SlowProbe", "x"), "startsAt": "yesterday"})).encode(),
])
def test_malformed_payload_is_400_and_runs_nothing(server, body):
    status, answer = server.post(body)
    assert status == 400 and "malformed" in answer["error"]
    time.sleep(0.5)
    h = server.health()
    assert h["queued"] == 0 and h["running"] == 0 and h["finished"] == 0 and not server.archive.exists()


@pytest.mark.parametrize("token", [None, "wrong-token", TOKEN + "x"])
def test_missing_or_wrong_token_is_401(server, token):
    status, answer = server.post(payload(alert("SlowProbe", "t1")), token=token)
    assert status == 401 and server.health()["finished"] == 0 and server.health()["queued"] == 0


def test_no_token_refuses_a_non_loopback_address(tmp_path):
    out = subprocess.run([sys.executable, "-m", "smartops_nb.cli", "serve", "--host", "0.0.0.0", "--port",
                          str(free_port())], cwd=REPO, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "SMARTOPS_SERVE_TOKEN": ""})
    assert out.returncode == 2 and "refusing to listen on 0.0.0.0 without a token" in out.stderr


@pytest.mark.timeout(240)
def test_sigterm_with_a_run_in_flight_records_it_and_exits(tmp_path, base_params, healthy_sandbox):
    s = Server(tmp_path, base_params, "--drain-timeout", "1")
    assert s.post(payload(alert("SlowProbe", "term1")))[0] == 202
    assert until(lambda: s.health()["running"] >= 1, timeout=120, interval=0.1), s.log.read_text()
    time.sleep(1.0)  # well into the notebook
    assert s.stop(timeout=60) == 0
    (rec,) = s.records()
    assert rec["incident_id"] == "SlowProbe-term1" + EPISODE and rec["status"] == "failed"
    assert rec["error"].startswith("interrupted: ") and "serve shut down before the run finished" in rec["error"]
    log = s.log.read_text()
    assert "SIGTERM received" in log and "interrupting run of high-latency" in log and "stopped" in log


def _serve_exit(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smartops_nb.cli", "serve", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "SMARTOPS_SERVE_TOKEN": ""})


def test_a_bad_match_re_regex_is_refused_at_start_up(tmp_path):
    routes = tmp_path / "routes.yaml"
    routes.write_text(yaml.safe_dump({"routes": [{"alertname": "SlowProbe", "runbook": "high-latency",
                                                  "match_re": {"env": "prod[("}}]}))
    out = _serve_exit(tmp_path, "--routes", str(routes), "--port", str(free_port()))
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "route 1: match_re env: 'prod[(' is not a valid regex" in out.stderr


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_a_port_out_of_range_is_a_usage_error(tmp_path, port):
    out = _serve_exit(tmp_path, "--port", port)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "--port" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.timeout(240)
def test_a_cold_run_is_interrupted_and_recorded_on_sigterm(tmp_path, base_params, healthy_sandbox):
    s = Server(tmp_path, base_params, "--warm", "0", "--drain-timeout", "1")
    (tmp_path / "base.yaml").write_text("environment: [unclosed\n")  # read once, at start-up: no effect now
    status, body = s.post(payload(alert("SlowProbe", "cold1")))
    assert status == 202 and body["accepted"][0]["incident_id"] == "SlowProbe-cold1" + EPISODE
    # running: a run still queued at SIGTERM is not recorded (the test below); a loaded machine may take
    # a while to hand the job to a worker
    assert until(lambda: s.health()["running"] >= 1, timeout=120, interval=0.1), s.log.read_text()
    time.sleep(1.0)
    assert s.stop(timeout=60) == 0
    (rec,) = s.records()
    assert rec["incident_id"] == "SlowProbe-cold1" + EPISODE and rec["status"] == "failed"
    assert rec["error"].startswith("interrupted: ") and "serve shut down before the run finished" in rec["error"]
    log = s.log.read_text()
    assert "(cold kernel)" in log and "interrupting run of high-latency" in log


@pytest.mark.timeout(120)
def test_a_run_getting_its_kernel_during_the_drain_is_interrupted_and_recorded(tmp_path, base_params):
    import threading

    from smartops_nb.alerts.routes import Routes
    from smartops_nb.execution.prepare import prepare
    from smartops_nb.server import serve

    from smartops_nb.execution.kernels import RunHandle

    gate = threading.Event()

    class Gated(RunHandle):  # taken off the queue, its kernel not yet handed to the run
        def attach(self, kernel):
            gate.wait(60)
            super().attach(kernel)

    svc = serve.Service(Routes([], [], base_params), open_archive(tmp_path / "incidents"), workers=1, warm=0)
    svc.start()
    prep = prepare("high-latency", cli={"incident_id": "SlowProbe-race"}, base=base_params)
    assert svc._submit(serve.Job(("SlowProbe-race", "firing"), prep, handle=Gated())) == "accepted"
    deadline = time.monotonic() + 10
    while svc.queue.qsize() and time.monotonic() < deadline:  # the worker has it (not dropped as queued)
        time.sleep(0.05)
    drain = threading.Thread(target=svc.drain, args=(0.5,))
    drain.start()
    deadline = time.monotonic() + 10
    while not svc._interrupting and time.monotonic() < deadline:
        time.sleep(0.05)
    assert svc._interrupting
    gate.set()
    drain.join(60)
    assert not drain.is_alive()
    (path,) = (tmp_path / "incidents").glob("*.ipynb")
    rec = nbformat.read(path, as_version=4).metadata["smartops"]
    assert rec["incident_id"] == "SlowProbe-race" and rec["status"] == "failed"
    assert rec["error"].startswith("interrupted: ") and "serve shut down before the run finished" in rec["error"]


def test_a_run_queued_but_never_started_at_shutdown_is_released_for_alertmanagers_next_notification(
        tmp_path, base_params):
    """Accepted, queued behind a busy worker, then SIGTERM: the run is not recorded, so its episode's
    claim must not survive either, or the still-firing alert's next notification (repeat_interval, or
    the retry after the restart) would be deduplicated against a run that never happened."""
    import threading

    from smartops_nb.alerts.routes import load_routes
    from smartops_nb.execution.kernels import RunHandle
    from smartops_nb.execution.prepare import prepare
    from smartops_nb.records.entries import NEW, REPEAT
    from smartops_nb.server import serve

    gate = threading.Event()

    class Gated(RunHandle):  # holds the one worker until the drain has dropped what waits behind it
        def attach(self, kernel):
            gate.wait(60)
            super().attach(kernel)

    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(ROUTES))
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base_params))
    routes = load_routes(tmp_path / "routes.yaml", [str(tmp_path / "base.yaml")])
    from smartops_nb.records.archive import open_archive

    svc = serve.Service(routes, open_archive(tmp_path / "incidents"), workers=1, warm=0)
    svc.start()
    busy = prepare("high-latency", cli={"incident_id": "SlowProbe-busy"}, base=base_params)
    assert svc._submit(serve.Job(("SlowProbe-busy", "firing"), busy, handle=Gated())) == "accepted"
    assert until(lambda: svc.queue.qsize() == 0, timeout=30)  # the worker holds the busy run
    status, body = svc.handle(payload(alert("SlowProbe", "queued1")))
    queued = "SlowProbe-queued1" + EPISODE
    assert status == 202 and [e["incident_id"] for e in body["accepted"]] == [queued]
    assert svc.index.claim_episode(queued, "firing") == REPEAT  # taken in: a repeat now would be deduplicated
    drain = threading.Thread(target=svc.drain, args=(0.5,))
    drain.start()
    assert until(lambda: svc._interrupting, timeout=30)  # the drain passed its timeout
    gate.set()
    drain.join(120)
    assert not drain.is_alive()
    assert svc.index.claim_episode(queued, "firing") == NEW  # released: the next notification runs it
    names = [p.name for p in (tmp_path / "incidents").glob("*.ipynb")]
    assert len(names) == 1 and "queued1" not in names[0]  # only the interrupted busy run has a record
