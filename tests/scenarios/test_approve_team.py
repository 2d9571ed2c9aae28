"""Approving from the team's set-up: plans in the shared archive (S3 + PostgreSQL), approved from another
machine; approvals handed to the queue's workers, two plans on one target carried out one after the other.

Real SeaweedFS, real PostgreSQL (index and queue), the sandbox's real connection leak, real `smartops`
processes. "Another machine" is another process with a state folder of its own: it shares nothing
with the first but the object store and the database, as two hosts would.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.request

import pytest

from smartops_nb.execution.flow import investigate
from smartops_nb.execution.prepare import prepare
from smartops_nb.records.archive import open_archive
from smartops_nb.waiting import until
from tests.conftest import REPO, WarmKernels
from tests.fixtures.leak import LEAK_IDLE_MINUTES, app_backends
from tests.fixtures.web import serve_web
from tests.scenarios.test_queue import Team

pytestmark = pytest.mark.scenario

TOKEN = "team-approve-token-0b7d"


def _smartops(*args: str, state, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "SMARTOPS_STATE_DIR": str(state), "SMARTOPS_QUEUE": "", "SMARTOPS_INDEX": ""}
    return subprocess.run([sys.executable, "-m", "smartops_nb.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _headless(archive, params: dict, incident_id: str):
    prep = prepare("db-pool-exhausted", (), {**params, "idle_minutes": LEAK_IDLE_MINUTES, "incident_id": incident_id})
    with WarmKernels.lease() as kernel:
        result = investigate(prep, archive, progress=False, cell_timeout=120, kernel=kernel)
    (plan,) = result.summary["plans"]
    return result, plan


def _get(url: str) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_a_plan_in_the_team_archive_is_approved_from_another_machine(leak, healthy_sandbox, sandbox_params,
                                                                     seaweedfs, archive_dsn, tmp_path,
                                                                     monkeypatch):
    url = f"s3://incidents/{tmp_path.name}"
    monkeypatch.setenv("SMARTOPS_STATE_DIR", str(tmp_path / "machine-a"))
    team = open_archive(url, archive_dsn)
    first, plan = _headless(team, sandbox_params, "INC-team-approve")
    assert str(first.record).startswith(url)

    # machine B approves: it never saw machine A's files, only S3 and PostgreSQL
    where = ("--archive", url, "--index", archive_dsn)
    done = _smartops("approve", plan["id"], "--operator", "bob", *where, state=tmp_path / "machine-b")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"plan {plan['id']}: executed" in done.stdout
    assert not (app_backends(healthy_sandbox) & leak)  # the leaked connections are gone
    stored = team.plan_store().get(plan["id"])
    assert (stored.state, stored.decided_by) == ("executed", "bob")

    # machine A sees it: approving again is refused there, nothing more is run
    again = _smartops("approve", plan["id"], "--operator", "carol", *where, state=tmp_path / "machine-a")
    assert again.returncode == 1 and "already carried out" in again.stderr, again.stderr
    shown = _smartops("incident", "show", "INC-team-approve", "--json", *where, state=tmp_path / "machine-c")
    inc = json.loads(shown.stdout)
    assert [r["role"] for r in inc["records"]] == ["investigation", "mitigation (plan)"]
    assert [(p["id"], p["state"], p["decided_by"]) for p in inc["plans"]] == [(plan["id"], "executed", "bob")]
    assert len(team.index.list(0)) == 2  # two records in one chain, whoever wrote them
    report = _smartops("archive", "verify", *where, state=tmp_path / "machine-c")
    assert report.returncode == 0, report.stdout + report.stderr

    # the web view reads the same team archive: incident, record (verified), its rendering and its bytes
    with serve_web(team, TOKEN) as base:
        status, body = _get(f"{base}/incidents/INC-team-approve")
        assert status == 200 and plan["id"] in body.decode() and "executed" in body.decode()
        name = stored.outcome_record
        status, body = _get(f"{base}/records/{name}")
        assert status == 200 and "verified" in body.decode()
        assert _get(f"{base}/records/{name}/view")[0] == 200
        status, data = _get(f"{base}/records/{name}/download")
        assert status == 200 and hashlib.sha256(data).hexdigest() == team.index.entry(name)["sha256"]
        assert _get(f"{base}/records/..%2F..%2Fetc%2Fpasswd")[0] == 404
        assert _get(f"{base}/records/pyproject.toml")[0] == 404
        # an object edited in S3 after the page was first seen: the page says so
        team.storage.fs.pipe(team.storage._key(name), data.replace(b"connections", b"connectionz", 1))
        status, body = _get(f"{base}/records/{name}")
        assert status == 200 and "does not verify" in body.decode()


def _overlap(a: dict, b: dict) -> bool:
    return a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"]


def test_queued_approvals_of_two_plans_on_one_target_run_one_after_the_other(leak, healthy_sandbox,
                                                                               sandbox_params, queue_dsn,
                                                                               tmp_path):
    team = Team(tmp_path, queue_dsn, {**sandbox_params, "mode": "investigate"})
    try:
        # two headless runs, two incidents, two pending plans on the same target
        (_, one), (_, two) = (_headless(open_archive(team.archive), sandbox_params, f"INC-lock-{i}") for i in (1, 2))
        assert one["target"] == two["target"]
        workers = [team.worker(), team.worker()]
        # approved together: one through the command (no wait), one through serve's approval endpoint
        cli = subprocess.Popen([sys.executable, "-m", "smartops_nb.cli", "approve", one["id"], "--operator", "alice",
                                "--archive", str(team.archive), "--queue", queue_dsn, "--no-wait"], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with serve_web(open_archive(team.archive), TOKEN, queue=queue_dsn) as base:
            req = urllib.request.Request(f"{base}/approvals/{two['id']}", method="POST", data=b'{"operator": "bob"}',
                                         headers={"Authorization": f"Bearer {TOKEN}"})
            with urllib.request.urlopen(req, timeout=60) as r:
                assert r.status == 202
                answer = json.loads(r.read())
        out, err = cli.communicate(timeout=120)
        assert cli.returncode == 0 and "queued as job" in out, out + err
        assert answer["status"] == "queued" and answer["job"], answer

        store = open_archive(team.archive).plan_store()
        assert until(lambda: {store.get(p["id"]).state for p in (one, two)} <= {"executed", "refused", "failed"},
                     240, 1.0), team.logs()
        fates = {p["id"]: store.get(p["id"]) for p in (one, two)}
        # whichever ran first terminated the leak; the other re-checked, found it gone, and refused
        assert sorted(f.state for f in fates.values()) == ["executed", "refused"], [f.to_dict() for f in fates.values()]
        assert not (app_backends(healthy_sandbox) & leak)
        runs = [r for r in team.records() if r.get("parameters", {}).get("plan_id")]
        assert len(runs) == 2 and not _overlap(*runs), [(r["started_at"], r["finished_at"]) for r in runs]
        assert {r["queue"]["job"] for r in runs} and all(r["operator"] in ("alice", "bob") for r in runs)
        for w in workers:
            assert w.stop() == 0
    finally:
        team.stop()


def test_an_unreachable_queue_approves_nothing_and_does_nothing(leak, sandbox_params, archive, tmp_path):
    _, plan = _headless(open_archive(archive), sandbox_params, "INC-noqueue")
    dead = "postgresql://nobody@127.0.0.1:1/none"
    out = _smartops("approve", plan["id"], "--operator", "alice", "--archive", str(archive), "--queue", dead,
                    state=tmp_path / "state")
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "unreachable" in out.stderr and "nothing approved" in out.stderr
    stored = open_archive(archive).plan_store().get(plan["id"])
    assert stored.state == "pending" and stored.decided_by is None  # approvable again
    assert len(list(archive.glob("*.ipynb"))) == 1  # no mitigating run


def test_a_queue_that_refuses_the_job_gets_the_plan_released(leak, sandbox_params, archive, queue_dsn, tmp_path):
    # a reachable database without the queue's schema (no worker or serve ever started on it)
    _, plan = _headless(open_archive(archive), sandbox_params, "INC-noschema")
    out = _smartops("approve", plan["id"], "--operator", "alice", "--archive", str(archive), "--queue", queue_dsn,
                    state=tmp_path / "state")
    assert out.returncode == 1 and "did not take it" in out.stderr and "released" in out.stderr, out.stderr
    stored = open_archive(archive).plan_store().get(plan["id"])
    assert stored.state == "pending" and stored.decided_by is None and "not queued" in stored.reason
    assert len(list(archive.glob("*.ipynb"))) == 1
