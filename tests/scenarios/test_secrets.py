"""No secret in a record: secrets planted where they enter (a DSN password, an ``env:`` reference,
a pod's env var, log lines) appear nowhere in the saved notebook nor in its HTML export, while the
runbooks still connect and work."""
from __future__ import annotations

import nbformat
from nbconvert import HTMLExporter

from smartops_nb import redact
from tests.conftest import run_runbook
from tests.fixtures.leak import LEAK_IDLE_MINUTES, inject_leak


def _leaks(rec, secrets: list[str]) -> dict[str, list[str]]:
    """Which secrets appear in the record file or in its HTML export (nbconvert)."""
    text = rec.path.read_text()
    html, _ = HTMLExporter().from_notebook_node(nbformat.read(rec.path, as_version=4))
    return {where: [s for s in secrets if s in body] for where, body in (("ipynb", text), ("html", html))
            if any(s in body for s in secrets)}


def test_db_pool_dsn_env_reference_and_log_line_secrets(healthy_sandbox, sandbox_params, archive, monkeypatch):
    dsn_secret, env_secret, token, bearer = "Pw-dsn-6b1f0e", "Pw-env-93c4aa", "tk-log-5e8d21c0", "brr.4f0a9c7d2e"
    inject_leak(healthy_sandbox)
    with open(sandbox_params["api_log_path"], "a") as log:  # what an API prints when a request fails
        log.write(f"ERROR connection pool exhausted; request GET /api/search?q=protein&token={token}\n")
        log.write(f"ERROR connection pool exhausted; headers Authorization: Bearer {bearer}\n")
    dsn = healthy_sandbox.postgres.dsn(user="smartops").replace("smartops@", f"smartops:{dsn_secret}@")
    monkeypatch.setenv("SMARTOPS_TEST_ADMIN_DSN", healthy_sandbox.postgres.dsn(user="postgres").replace(
        "postgres@", f"postgres:{env_secret}@"))
    rec = run_runbook("db-pool-exhausted", archive, {
        **sandbox_params, "idle_minutes": LEAK_IDLE_MINUTES, "postgres_dsn": dsn,
        "postgres_admin_dsn": "env:SMARTOPS_TEST_ADMIN_DSN"})
    assert rec.summary["status"] == "completed"
    assert rec.finding("connection-usage")["status"] == "critical"  # it connected and worked
    assert "idle-connection-leak" in rec.causes
    assert rec.finding("api-pool-errors")["data"]["matches"] >= 2  # the log lines are shown, scrubbed
    assert any("token=******" in x for x in rec.finding("api-pool-errors")["data"]["examples"])
    assert not _leaks(rec, [dsn_secret, env_secret, token, bearer,
                            __import__("os").environ["SMARTOPS_TEST_ADMIN_DSN"]])


def test_pod_env_and_crash_log_secrets(kube_rollout, planted_secret, archive):
    token = "tk-pod-77aa01bd"
    kube_rollout.deploy("smartamazon/api:1.5.0", "crash", logs=[
        "INFO: starting", f"DEBUG: calling billing with Authorization: Bearer {token}",
        f"FATAL: could not connect: password authentication failed, DB_PASSWORD={planted_secret}"])
    rec = run_runbook("failed-deployment", archive, kube_rollout.params())
    assert rec.summary["status"] == "completed" and rec.causes == ["crash-on-start"]
    assert rec.finding("environment")["data"]["variables"]["DB_PASSWORD"] == redact.MASK
    assert not _leaks(rec, [planted_secret, token])

