"""Team mode: `smartops serve --queue` and `smartops worker` on a real PostgreSQL queue (Procrastinate).

Real processes on free loopback ports: `serve` replicas, `worker` processes with real kernels
running real runbooks against the session's sandbox, the queue on its own embedded PostgreSQL
(``queue_dsn``: a fresh database per test). The burst test also runs the in-process mode.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import psycopg
import pytest
import yaml

from smartops_nb.waiting import until
from tests.conftest import REPO, free_port, post_alerts, stop_process
from tests.fixtures.leak import LEAK_IDLE_MINUTES
from tests.scenarios.test_serve import EPISODE, alert, payload

pytestmark = pytest.mark.scenario

ROUTES = {
    "confirm_on_resolved": True,
    "routes": [
        # a quick run: the connection-pool check against the sandbox's PostgreSQL
        {"alertname": "PoolAlert", "runbook": "db-pool-exhausted", "parameters": {"idle_minutes": LEAK_IDLE_MINUTES}},
        # a slow run without any fault: sampling the API for a few seconds
        {"alertname": "SlowProbe", "runbook": "high-latency", "parameters": {"sample_seconds": 8.0}},
    ],
}
QUEUE_TABLES = ("procrastinate_jobs", "procrastinate_events", "procrastinate_workers",
                "procrastinate_periodic_defers", "smartops_job_notes")


class Proc:
    """A `smartops` process of the test's, in its own session, logging to a file; stopped by pid."""

    def __init__(self, tmp: Path, name: str, *args: str):
        self.log = tmp / f"{name}.log"
        self.proc = subprocess.Popen([sys.executable, "-m", "smartops_nb.cli", *args], cwd=REPO,
                                     env={**os.environ, "SMARTOPS_SERVE_TOKEN": "", "SMARTOPS_QUEUE": ""},
                                     stdout=subprocess.DEVNULL, stderr=open(self.log, "w"), start_new_session=True)
        self.kernels: set[int] = set()

    def text(self) -> str:
        return self.log.read_text()

    def children(self) -> set[int]:
        """Pids whose parent is this process (its kernels)."""
        out = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                    out.add(int(stat.parent.name))
            except (OSError, ValueError, IndexError):
                pass
        return out

    def kill(self) -> None:
        """SIGKILL the process alone (as a crash would); its orphaned kernels are reaped in stop()."""
        self.kernels |= self.children()
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.kernels |= self.children()
        try:
            return stop_process(self.proc, timeout, what=self.log.name, log=self.log)
        finally:
            self._reap_kernels()

    def _reap_kernels(self) -> None:
        for pid in self.kernels:  # kernels of a killed process (each in a process group of its own)
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


class Team:
    """Routes, a base parameters file, an archive, and the serve/worker processes of one test."""

    def __init__(self, tmp: Path, dsn: str, base_params: dict, routes: dict = ROUTES):
        self.tmp, self.dsn, self.archive = tmp, dsn, tmp / "incidents"
        self.routes, self.base = tmp / "routes.yaml", tmp / "base.yaml"
        self.routes.write_text(yaml.safe_dump(routes))
        self.base.write_text(yaml.safe_dump(base_params))
        self.procs: list[Proc] = []
        self.ports: dict[Proc, int] = {}

    def serve(self, *args: str, queue: bool = True) -> "Proc":
        port = free_port()
        p = Proc(self.tmp, f"serve-{len(self.procs)}", "serve", "--port", str(port), "--routes", str(self.routes),
                 "-f", str(self.base), "--archive", str(self.archive), "--cell-timeout", "120",
                 *(["--queue", self.dsn] if queue else []), *args)
        self.procs.append(p)
        self.ports[p] = port
        ok = until(lambda: p.proc.poll() is not None or self.health(p) is not None, 60, 0.2)
        assert ok and p.proc.poll() is None, p.text()
        return p

    def worker(self, *args: str, routes: Path | None = None) -> Proc:
        p = Proc(self.tmp, f"worker-{len(self.procs)}", "worker", "--queue", self.dsn, "--routes",
                 str(routes or self.routes), "-f", str(self.base), "--archive", str(self.archive),
                 "--concurrency", "1", "--heartbeat", "1", "--poll", "1", "--cell-timeout", "120", *args)
        self.procs.append(p)
        assert until(lambda: p.proc.poll() is not None or "Starting worker" in p.text(), 60, 0.2), p.text()
        assert p.proc.poll() is None, p.text()
        return p

    def health(self, p: Proc) -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[p]}/healthz", timeout=5) as r:
                return json.loads(r.read())
        except OSError:
            return None

    def post(self, p: Proc, body: dict) -> tuple[int, dict]:
        return post_alerts(f"http://127.0.0.1:{self.ports[p]}/alerts", body, timeout=30)

    def records(self) -> list[dict]:
        out = []
        for path in sorted(self.archive.glob("*.ipynb")):
            try:
                out.append(nbformat.read(path, as_version=4).metadata["smartops"])
            except Exception:  # being written
                pass
        return out

    def queue(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "smartops_nb.cli", "queue", *args, "--queue", self.dsn],
                              cwd=REPO, capture_output=True, text=True, timeout=60)

    def status(self) -> dict:
        out = self.queue("status", "--json", "--jobs", "500")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def wait_idle(self, n_records: int, timeout: float) -> list[dict]:
        """Bounded wait: ``n_records`` records and nothing waiting or running in the queue."""
        def done():
            s = self.status()
            return len(self.records()) >= n_records and s["waiting"] == 0 and s["running"] == 0
        assert until(done, timeout, 1.0), (len(self.records()), self.status(), self.logs())
        return self.records()

    def logs(self) -> str:
        return "\n".join(f"--- {p.log.name}\n{p.text()[-3000:]}" for p in self.procs)

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.stop()


@pytest.fixture
def base_params(sandbox_params) -> dict:
    return {**sandbox_params, "mode": "investigate"}


@pytest.fixture
def team(tmp_path, queue_dsn, base_params):
    t = Team(tmp_path, queue_dsn, base_params)
    yield t
    t.stop()
    if (tmp_path / "incidents").exists():  # nothing left stuck in the queue after a test
        s = t.status()
        assert s["waiting"] == 0 and s["running"] == 0, s


def pool_alert(fp: str, status: str = "firing") -> dict:
    return alert("PoolAlert", fp, status, env="sandbox-ci")


def burst(url: str, bodies: list[bytes]) -> list[int | str]:
    """POST every body at the same moment (one connection each); the status, or the error's name."""
    gate = threading.Barrier(len(bodies))
    host, port = url.split("//")[1].split("/")[0].split(":")

    def one(body: bytes) -> int | str:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        try:
            gate.wait(30)
            conn.request("POST", "/alerts", body, {"Content-Type": "application/json"})
            return conn.getresponse().status
        except Exception as e:
            return type(e).__name__
        finally:
            conn.close()

    with ThreadPoolExecutor(len(bodies)) as ex:
        return list(ex.map(one, bodies))


# -- the burst, both modes -------------------------------------------------------------------------
@pytest.mark.timeout(600)
def test_a_burst_of_200_in_process_gets_every_request_answered(tmp_path, base_params, healthy_sandbox):
    team = Team(tmp_path, "", base_params)
    try:
        s = team.serve(queue=False)
        assert until(lambda: team.health(s)["kernel_pool"]["ready"] >= 1, 60, 0.2)
        statuses = burst(f"http://127.0.0.1:{team.ports[s]}/alerts",
                         [json.dumps(payload(pool_alert(f"b{i}"))).encode() for i in range(200)])
        assert set(statuses) <= {202, 503}, sorted(set(map(str, statuses)))
        accepted = statuses.count(202)
        assert accepted >= 2 and team.health(s) is not None   # serve stays up
        assert until(lambda: len(team.records()) >= accepted and team.health(s)["queued"] == 0
                     and team.health(s)["running"] == 0, 300, 0.5), team.logs()
        assert len(team.records()) == accepted
    finally:
        team.stop()


@pytest.mark.timeout(600)
def test_a_burst_of_200_in_queue_mode_gets_every_request_answered(team, healthy_sandbox):
    s = team.serve()
    # 200 requests for 20 incidents at once: every one answered, 20 runs queued, the rest deduplicated
    bodies = [json.dumps(payload(pool_alert(f"q{i % 20}"))).encode() for i in range(200)]
    statuses = burst(f"http://127.0.0.1:{team.ports[s]}/alerts", bodies)
    assert statuses == [202] * 200, sorted(set(map(str, statuses)))
    assert team.status()["waiting"] == 20
    team.worker("--concurrency", "2")
    recs = team.wait_idle(20, 400)
    assert sorted(r["incident_id"] for r in recs) == sorted(f"PoolAlert-q{i}{EPISODE}" for i in range(20))


# -- dedup across replicas, records by workers -----------------------------------------------------
@pytest.mark.timeout(900)
def test_two_replicas_three_workers_a_storm_gives_exactly_one_record_per_alert(team, healthy_sandbox):
    # 60 alerts and 20 repeats (it was 100 and 30: the same races, ~2 s of runbook per alert on 2 cores,
    # and the whole suite near its 30-minute budget)
    alerts, repeats = 60, 20
    a, b = team.serve(), team.serve()
    workers = [team.worker() for _ in range(3)]
    sends = [(a if i % 2 else b, pool_alert(f"s{i}")) for i in range(alerts)]
    sends += [(a if i % 2 else b, pool_alert(f"s{i}")) for i in range(alerts - repeats, alerts)]  # to both replicas
    with ThreadPoolExecutor(8) as ex:
        answers = list(ex.map(lambda sa: team.post(sa[0], payload(sa[1])), sends))
    assert all(status == 202 for status, _ in answers), answers
    assert sum(len(body.get("accepted", [])) for _, body in answers) == alerts
    assert sum(len(body.get("deduplicated", [])) for _, body in answers) == repeats
    recs = team.wait_idle(alerts, 800)
    ids = [r["incident_id"] for r in recs]
    assert len(ids) == alerts and len(set(ids)) == alerts
    assert all(r["queue"]["attempt"] == 1 for r in recs)
    assert len({r["queue"]["worker"] for r in recs}) >= 2  # the storm was shared
    s = team.status()
    assert s["jobs"] == {"succeeded": alerts}
    assert all(w.proc.poll() is None for w in workers)


@pytest.mark.timeout(300)
def test_a_repeat_while_the_run_is_running_is_refused_by_the_other_replica(team, healthy_sandbox):
    a, b = team.serve(), team.serve()
    team.worker()
    assert team.post(a, payload(alert("SlowProbe", "r1")))[0] == 202
    assert until(lambda: team.status()["running"] == 1, 60, 0.3)
    status, body = team.post(b, payload(alert("SlowProbe", "r1")))
    assert status == 202 and body == {"deduplicated": [
        {"incident_id": "SlowProbe-r1" + EPISODE, "runbook": "high-latency", "kind": "firing"}]}
    (rec,) = team.wait_idle(1, 120)
    assert rec["incident_id"] == "SlowProbe-r1" + EPISODE and rec["status"] == "completed"
    h = team.health(b)
    assert h["queue"] == {"reachable": True, "depth": 0, "running": 0, "oldest_waiting_s": None}


# -- nothing lost when a worker dies ---------------------------------------------------------------
@pytest.mark.timeout(300)
def test_a_worker_killed_mid_run_is_retried_by_another_and_the_attempt_is_visible(team, healthy_sandbox):
    s = team.serve()
    first = team.worker()
    assert team.post(s, payload(alert("SlowProbe", "kill1")))[0] == 202
    assert until(lambda: "run started: high-latency" in first.text(), 60, 0.2), first.text()
    second = team.worker()
    first.kill()
    t0 = time.monotonic()
    # bound: stalled after 3 heartbeats (3 s) + the 5 s sweep + a run of ~8 s sampling + kernel start
    (rec,) = team.wait_idle(1, 90)
    took = time.monotonic() - t0
    assert took < 90
    assert rec["incident_id"] == "SlowProbe-kill1" + EPISODE and rec["status"] == "completed"
    assert rec["queue"]["attempt"] == 2
    assert any("attempt 1 lost" in line for line in rec["queue"]["earlier_attempts"]), rec["queue"]
    job = team.status()["latest"][0]
    assert job["status"] == "succeeded" and job["attempts"] == 2  # the lost attempt and the retry
    assert "run finished" in second.text()


@pytest.mark.timeout(300)
def test_a_job_whose_route_was_removed_fails_with_a_reason_and_the_worker_lives(team, healthy_sandbox):
    s = team.serve()
    assert team.post(s, payload(alert("SlowProbe", "gone1")))[0] == 202
    fewer = team.tmp / "routes-fewer.yaml"
    fewer.write_text(yaml.safe_dump({"routes": [ROUTES["routes"][0]]}))
    w = team.worker(routes=fewer)
    assert until(lambda: team.status()["jobs"].get("failed") == 1, 60, 0.5), team.logs()
    job = team.status()["latest"][0]
    assert "route 'SlowProbe' is not in this worker's routes file" in job["last_note"]
    text = team.queue("status").stdout
    assert "failed" in text and "route 'SlowProbe' is not in this worker's routes file" in text
    # the worker is alive and runs the next job
    assert team.post(s, payload(pool_alert("after1")))[0] == 202
    recs = team.wait_idle(1, 120)
    assert [r["incident_id"] for r in recs] == ["PoolAlert-after1" + EPISODE] and w.proc.poll() is None


# -- no secret in the queue ------------------------------------------------------------------------
@pytest.mark.timeout(300)
def test_a_literal_password_in_a_parameters_file_is_in_no_queue_table_and_no_record(team, sandbox,
                                                                                   healthy_sandbox):
    password = "Lit3ral-Pa55word-9431"
    pg = sandbox.params()["postgres_dsn"]
    with_secret = pg.replace("postgresql://", f"postgresql://smartops:{password}@", 1) if "@" not in pg else \
        pg.replace("@", f":{password}@", 1)
    team.base.write_text(yaml.safe_dump({**yaml.safe_load(team.base.read_text()), "postgres_dsn": with_secret}))
    s = team.serve()
    team.worker()
    assert team.post(s, payload(pool_alert("secret1")))[0] == 202
    (rec,) = team.wait_idle(1, 120)
    assert rec["status"] == "completed"
    with psycopg.connect(team.dsn, connect_timeout=5) as c:
        for table in QUEUE_TABLES:
            rows = c.execute(f"SELECT t::text FROM {table} t").fetchall()
            assert not any(password in r[0] for r in rows), table
        args = c.execute("SELECT args FROM procrastinate_jobs WHERE queue_name = 'smartops-runs'").fetchone()[0]
    assert set(args) == {"alert", "route"} and args["route"] == "PoolAlert"
    for path in team.archive.glob("*"):
        assert password not in path.read_text(errors="replace")
    for p in team.procs:
        assert password not in p.text()


# -- queue status / init, bad input ----------------------------------------------------------------
def test_queue_init_is_idempotent_and_status_reports_an_empty_queue(tmp_path, queue_dsn):
    team = Team(tmp_path, queue_dsn, {})
    first, second = team.queue("init", "--json"), team.queue("init", "--json")
    assert first.returncode == 0 and json.loads(first.stdout)["applied"] is True, first.stderr
    assert second.returncode == 0 and json.loads(second.stdout)["applied"] is False
    s = team.status()
    assert s["jobs"] == {} and s["waiting"] == 0 and s["oldest_waiting_s"] is None and s["workers"] == []
    assert "waiting 0, running 0" in team.queue("status").stdout


def test_several_processes_applying_the_schema_at_once_apply_it_once(tmp_path, queue_dsn):
    team = Team(tmp_path, queue_dsn, {})
    with ThreadPoolExecutor(4) as ex:
        outs = list(ex.map(lambda _: team.queue("init", "--json"), range(4)))
    assert all(o.returncode == 0 for o in outs), [o.stderr for o in outs]
    assert sum(json.loads(o.stdout)["applied"] for o in outs) == 1


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["worker"], ["queue", "status"]])
def test_an_unreachable_queue_at_start_is_one_line_and_exit_2(tmp_path, command):
    dsn = f"postgresql://smartops:hunter2@127.0.0.1:{free_port()}/queue"
    out = subprocess.run([sys.executable, "-m", "smartops_nb.cli", *command, "--queue", dsn], cwd=REPO,
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "SMARTOPS_SERVE_TOKEN": "", "SMARTOPS_QUEUE": ""})
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "queue unreachable at smartops@127.0.0.1" in lines[0], out.stderr
    assert "hunter2" not in out.stderr


# -- drain, a dead serve replica, a restarted PostgreSQL -------------------------------------------
@pytest.mark.timeout(300)
def test_sigterm_hands_a_running_job_back_and_another_worker_completes_it(team, healthy_sandbox):
    s = team.serve()
    first = team.worker("--drain-timeout", "1")
    assert team.post(s, payload(alert("SlowProbe", "drain1")))[0] == 202
    assert until(lambda: "run started: high-latency" in first.text(), 60, 0.2), first.text()
    assert first.stop(timeout=60) == 0
    assert "handing it back" in first.text()
    team.worker()
    recs = team.wait_idle(2, 120)
    handed, done = sorted(recs, key=lambda r: r["queue"]["attempt"])
    assert handed["status"] == "failed" and "handed back to the queue" in handed["error"]
    assert done["status"] == "completed" and done["queue"]["attempt"] == 2
    assert any("handed back on shutdown" in line for line in done["queue"]["earlier_attempts"])


@pytest.mark.timeout(600)
def test_a_killed_serve_replica_loses_nothing_it_accepted(team, healthy_sandbox):
    a, b = team.serve(), team.serve()
    team.worker(), team.worker()
    accepted, pending = [], [pool_alert(f"k{i}") for i in range(20)]
    for i, al in enumerate(list(pending)):
        if i == 10:
            a.kill()
        target = a if i % 2 and a.proc.poll() is None else b
        status, _ = team.post(target, payload(al))
        if status == 202:
            accepted.append(al["fingerprint"])
    assert len(accepted) == 20  # the dead replica was not asked again; the other took the rest
    recs = team.wait_idle(20, 500)
    assert sorted(r["incident_id"] for r in recs) == sorted(f"PoolAlert-{fp}{EPISODE}" for fp in accepted)


@pytest.mark.timeout(900)
def test_postgresql_restarted_during_a_storm_503s_then_recovers_losing_and_repeating_nothing(
        team, queue_postgres, healthy_sandbox):
    s = team.serve()
    workers = [team.worker("--drain-timeout", "120"), team.worker("--drain-timeout", "120")]
    answers: dict[str, list[int]] = {}

    def send(fp: str) -> int:
        status, _ = team.post(s, payload(pool_alert(fp)))
        answers.setdefault(fp, []).append(status)
        return status

    for i in range(10):
        assert send(f"pg{i}") == 202
    queue_postgres.stop()
    down = [send(f"pg{i}") for i in range(10, 16)]
    assert down == [503] * 6
    assert team.health(s)["queue"] == {"reachable": False}
    queue_postgres.start(timeout=60)
    # Alertmanager retries what got 503; serve recovers by itself
    assert until(lambda: send("pg10") == 202, 60, 1.0), team.logs()
    for i in range(11, 20):
        assert until(lambda i=i: send(f"pg{i}") == 202, 30, 1.0)
    recs = team.wait_idle(20, 700)
    ids = [r["incident_id"] for r in recs]
    assert sorted(ids) == sorted(f"PoolAlert-pg{i}{EPISODE}" for i in range(20)), ids  # none lost, none twice
    log = team.procs[0].text()
    assert log.count("queue unreachable (") == 1 and "queue reachable again" in log
    assert all(w.proc.poll() is None for w in workers)


@pytest.mark.timeout(600)
def test_the_readme_team_demo_runs():
    """README, "Team mode: the queue": the one-command demo really runs and prints the record."""
    def default_archive() -> dict[str, float]:  # where a command without --archive writes, from REPO
        return {str(p): p.stat().st_mtime for p in (REPO / "incidents").glob("**/*")}

    before = default_archive()
    out = subprocess.run([sys.executable, str(REPO / "deploy" / "smartops" / "team_demo.py")], cwd=REPO,
                         capture_output=True, text=True, timeout=540)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    assert default_archive() == before  # every process of the demo used its own archive
    assert "POST /alerts -> 202" in out.stdout and "jobs: succeeded 1" in out.stdout
    assert re.search(r"incident PostgresConnectionsNearLimit-demo1-\d{8}T\d{6}Z, completed, CONFIRMED", out.stdout), \
        out.stdout  # the incident is the alert's firing episode


@pytest.mark.timeout(120)
def test_queue_cancel_and_retry_steer_one_job(tmp_path, queue_dsn):
    team = Team(tmp_path, queue_dsn, {"mode": "investigate"})
    try:
        s = team.serve()  # no worker: the job waits
        assert team.post(s, payload(pool_alert("c1")))[0] == 202
        (job,) = team.status()["latest"]
        assert job["status"] == "todo" and job["key"] == f"PoolAlert-c1{EPISODE}:firing"
        out = team.queue("cancel", str(job["id"]), "--json")
        assert out.returncode == 0 and json.loads(out.stdout)["job"] == job["id"], out.stderr
        assert team.status()["jobs"] == {"cancelled": 1}
        again = team.queue("cancel", str(job["id"]))
        assert again.returncode == 1 and len(again.stderr.strip().splitlines()) == 1, again.stderr
        retry = team.queue("retry", "999999")
        assert retry.returncode == 1 and "cannot be retried" in retry.stderr, retry.stderr
        # cancelled by an operator: a repeat of that episode stays taken in; the alert's next episode is queued
        assert team.post(s, payload(pool_alert("c1")))[1] == {"deduplicated": [
            {"incident_id": "PoolAlert-c1" + EPISODE, "runbook": "db-pool-exhausted", "kind": "firing"}]}
        assert team.post(s, payload({**pool_alert("c1"), "startsAt": "2026-11-26T15:00:00Z"}))[1] == {"accepted": [
            {"incident_id": "PoolAlert-c1-20261126T150000Z", "runbook": "db-pool-exhausted", "kind": "firing"}]}
        assert team.status()["waiting"] == 1
        h = team.health(s)
        assert h["queue"]["reachable"] and h["queue"]["depth"] == 1 and h["queue"]["oldest_waiting_s"] >= 0
    finally:
        team.stop()
        subprocess.run([sys.executable, "-m", "smartops_nb.cli", "queue", "cancel",
                        str(team.status()["latest"][0]["id"]), "--queue", queue_dsn], cwd=REPO, timeout=60)


@pytest.mark.timeout(300)
def test_a_run_past_its_deadline_has_its_kernel_killed_and_the_worker_goes_on(team, healthy_sandbox):
    s = team.serve()
    w = team.worker("--run-timeout", "3")   # the SlowProbe run samples for 8 s
    assert team.post(s, payload(alert("SlowProbe", "late1")))[0] == 202
    (rec,) = team.wait_idle(1, 120)
    assert rec["status"] == "failed" and rec["error"].startswith("interrupted: deadline: the run took longer than 3 s")
    assert w.proc.poll() is None and "ending run: deadline" in w.text()
    job = team.status()["latest"][0]
    assert job["status"] == "succeeded" and "record" in job["last_note"] and "failed" in job["last_note"]
    assert team.post(s, payload(pool_alert("next1")))[0] == 202   # the slot is free again
    assert len(team.wait_idle(2, 120)) == 2


@pytest.mark.parametrize("noticed", [True, False], ids=["after-it-noticed", "quick-restart"])
def test_a_worker_is_back_within_5_s_of_the_queues_return_named_by_host_and_pid(team, queue_postgres, noticed):
    import socket

    w = team.worker()
    name = f"{socket.gethostname()}:{w.proc.pid}"

    named = until(lambda: [x["name"] for x in team.status()["workers"]], 30, 0.5, done=lambda n: name in n)
    assert named == [name], named   # `queue status`: one line per `smartops worker` process, though it runs two

    def rows() -> dict[str, set]:  # what `queue status` reads, straight from the queue (a CLI call costs ~1 s)
        from smartops_nb.jobs.queue_sql import WORKERS
        try:
            with psycopg.connect(team.dsn, connect_timeout=2, autocommit=True) as c:
                return {r[0]: set(r[2]) for r in c.execute(WORKERS)}
        except psycopg.Error:  # the queue is down
            return {}
    before = rows()[name]
    lost_at = len(w.text())
    queue_postgres.stop()
    if noticed:
        assert until(lambda: "queue connection lost" in w.text(), 30, 0.2), w.text()
    queue_postgres.start(timeout=60)
    back = time.monotonic()
    # back at work = registered again (new worker rows, named), so polling for jobs
    assert until(lambda: rows().get(name, set()) - before, 30, 0.1), w.text()
    took = time.monotonic() - back
    print(f"worker back {took:.2f} s after the queue's PostgreSQL ({'noticed' if noticed else 'quick restart'})")
    assert took <= 5.0, f"the worker took {took:.1f} s to come back\n{w.text()[-3000:]}"  # the bound is the feature
    errors = [line for line in w.text()[lost_at:].splitlines() if " ERROR " in line or "Traceback" in line]
    assert len(errors) <= 2, "\n".join(errors)   # no burst: a line when it is lost, at most one more
