"""db-pool-exhausted against a real PostgreSQL whose slots were really filled by leaked connections."""
from __future__ import annotations

import json

import pytest

from tests.conftest import run_runbook
from tests.fixtures.leak import LEAK_IDLE_MINUTES, LEAKER
from tests.fixtures.leak import app_backends as _app_backends


def _params(sandbox_params, **extra):
    return {**sandbox_params, "idle_minutes": LEAK_IDLE_MINUTES, **extra}


def test_leak_investigate_confirms_both_causes_and_terminates_nothing(leak, healthy_sandbox, sandbox_params,
                                                                      archive):
    rec = run_runbook("db-pool-exhausted", archive, _params(sandbox_params))
    assert rec.exit_code == 0 and rec.summary["status"] == "completed"
    assert set(rec.causes) == {"connections-near-limit", "idle-connection-leak"}
    assert rec.summary["diagnosis"]["confirmed"] is True
    assert rec.finding("connection-usage")["status"] == "critical"
    assert rec.finding("api-pool-errors")["data"]["matches"] >= 1  # the API logged "connection pool exhausted"
    assert [a["mode"] for a in rec.actions()] == ["recommended"]
    assert set(rec.actions()[0]["result"]["preview"]["would_terminate"]) <= leak
    assert _app_backends(healthy_sandbox) == leak  # investigation terminated nothing


def test_leak_mitigate_approved_terminates_the_leaked_connections(leak, healthy_sandbox, sandbox_params, archive):
    rec = run_runbook("db-pool-exhausted", archive, _params(
        sandbox_params, mode="mitigate", approved_actions=["terminate-idle-connections"]))
    (action,) = rec.actions()
    assert action["mode"] == "executed" and action["action"] == "terminate-idle-connections"
    terminated = set(action["result"]["terminated_pids"])
    assert terminated == leak
    assert action["result"]["client_connections_after"] < action["result"]["client_connections_before"]
    assert not (_app_backends(healthy_sandbox) & leak)  # the leaked connections are gone
    assert any("action terminate-idle-connections" in t["event"] for t in rec.summary["timeline"])


def test_mitigate_without_approval_only_recommends(leak, healthy_sandbox, sandbox_params, archive):
    rec = run_runbook("db-pool-exhausted", archive, _params(sandbox_params, mode="mitigate"))
    assert [a["mode"] for a in rec.actions()] == ["recommended"]
    assert _app_backends(healthy_sandbox) == leak


def test_healthy_database_confirms_nothing(healthy_sandbox, sandbox_params, archive):
    rec = run_runbook("db-pool-exhausted", archive, _params(
        sandbox_params, mode="mitigate", approved_actions=["terminate-idle-connections"]))
    assert rec.summary["diagnosis"] == {**rec.summary["diagnosis"], "confirmed": False, "causes": []}
    assert rec.actions() == []
    assert {f["status"] for f in rec.summary["findings"]} <= {"ok", "warn"}


def test_ordinary_role_refused_still_confirms_from_the_refusal(leak, healthy_sandbox, sandbox_params, archive):
    dsn = healthy_sandbox.postgres.dsn(user=LEAKER)  # no pg_use_reserved_connections
    rec = run_runbook("db-pool-exhausted", archive, _params(sandbox_params, postgres_dsn=dsn, postgres_admin_dsn=""))
    assert rec.summary["status"] == "completed"
    assert "connections-near-limit" in rec.causes
    login = rec.finding("login")
    assert login["status"] == "critical" and login["data"]["slots_exhausted"] is True
    assert "pg_use_reserved_connections" in login["summary"]  # tells the engineer how to get in
    assert rec.finding("connection-usage")["status"] == "error"


def test_ordinary_role_refused_then_admin_dsn_gets_in(leak, healthy_sandbox, sandbox_params, archive):
    dsn = healthy_sandbox.postgres.dsn(user=LEAKER)
    rec = run_runbook("db-pool-exhausted", archive, _params(
        sandbox_params, postgres_dsn=dsn, postgres_admin_dsn=healthy_sandbox.postgres.dsn(user="smartops")))
    assert set(rec.causes) == {"connections-near-limit", "idle-connection-leak"}
    assert rec.finding("login")["data"]["via"] == "postgres_admin_dsn"


@pytest.mark.timeout(60)  # the bound is 30 s for the run itself; the kernel adds a few
def test_closed_port_is_an_error_finding_not_a_crash(sandbox_params, archive):
    from tests.conftest import free_port

    dsn = f"postgresql://smartops@127.0.0.1:{free_port()}/smartamazon"
    rec = run_runbook("db-pool-exhausted", archive, {**sandbox_params, "postgres_dsn": dsn,
                                                     "postgres_admin_dsn": ""})
    assert rec.exit_code == 0 and rec.summary["status"] == "completed"
    assert rec.finding("login")["status"] == "error"
    assert rec.finding("connection-usage")["status"] == "error"
    assert rec.summary["diagnosis"]["confirmed"] is False


def test_password_in_dsn_never_reaches_the_record(healthy_sandbox, sandbox_params, archive, monkeypatch):
    secret = "Pw-in-dsn-7c1e9b"
    dsn = healthy_sandbox.postgres.dsn(user="smartops").replace("smartops@", f"smartops:{secret}@")
    monkeypatch.setenv("SMARTOPS_TEST_ADMIN_DSN", healthy_sandbox.postgres.dsn(user="postgres").replace(
        "postgres@", "postgres:env-secret-5d2a@"))
    rec = run_runbook("db-pool-exhausted", archive, {**sandbox_params, "postgres_dsn": dsn,
                                                     "postgres_admin_dsn": "env:SMARTOPS_TEST_ADMIN_DSN"})
    assert rec.finding("login")["status"] == "ok"  # it still connects
    text = rec.path.read_text()
    assert secret not in text and "env-secret-5d2a" not in text
    assert "env:SMARTOPS_TEST_ADMIN_DSN" in json.dumps(rec.summary["parameters"])


def test_log_tail_reads_only_the_end(tmp_path):
    from smartops_nb.probes.logs import tail_file

    path = tmp_path / "api.log"
    path.write_text("".join(f"line {i}\n" for i in range(10000)))
    assert tail_file(path, 3) == ["line 9997", "line 9998", "line 9999"]
    assert tail_file(path, 3, block=5) == ["line 9997", "line 9998", "line 9999"]
    path.write_text("a\nb")
    assert tail_file(path, 5) == ["a", "b"]
