"""The sandbox's host faults (``smartops_sandbox.host_faults``), each injected for real through
``Sandbox.fault()``: the runbook the README pairs it with confirms the expected causes; after
``Sandbox.heal()`` the same runbook confirms nothing.

Process mode uses the session ``sandbox``; container mode (``database-down``, ``api-crash``,
``bad-deploy``) the session ``container_sandbox`` on podman.
"""
from __future__ import annotations

import os

import pytest
import redis

from smartops_sandbox import Sandbox
from smartops_sandbox.host_faults import BAD_IMAGE, REDIS_FILLER, disk_dir
from tests.conftest import http_status, require, run_runbook


def _confirmed(rec) -> bool:
    return rec.summary["diagnosis"]["confirmed"]


# -- process mode ------------------------------------------------------------------------------------
def test_redis_full_then_heal_from_another_process(healthy_sandbox, sandbox_params, archive):
    sb = healthy_sandbox
    r = redis.Redis.from_url(sb.redis.url, socket_timeout=5)
    before = r.config_get("maxmemory*")
    try:
        out = sb.fault("redis-full")
        assert out["result"]["writes_refused"] and out["result"]["filler_keys"] > 1000
        rec = run_runbook("redis-memory-full", archive, {**sandbox_params, "eviction_window_s": 0.5})
        assert {"maxmemory-reached", "noeviction-policy"} <= set(rec.causes)
        assert rec.finding("write-refusals")["data"]["writes_refused_now"]
    finally:
        healed = Sandbox.load(sb.state_dir).heal()   # what `smartops sandbox heal` does: reads state.json
    assert healed["healed"]["redis-full"]["filler_keys_deleted"] > 1000
    assert r.config_get("maxmemory*") == before and not list(r.scan_iter(match=REDIS_FILLER + "*"))
    rec = run_runbook("redis-memory-full", archive, {**sandbox_params, "eviction_window_s": 0.5})
    assert not _confirmed(rec) and rec.causes == []
    r.close()


def test_disk_full_then_heal(healthy_sandbox, archive, tmp_path):
    require("root", os.geteuid() == 0, "disk-full mounts a tmpfs: run the tests as root")
    sb = healthy_sandbox
    mnt = disk_dir(sb)
    params = {"environment": "test", "disk_paths": [str(mnt)], "log_dirs": [str(mnt / "logs")],
              "backup_dirs": [str(mnt / "backups")], "docker_host": f"unix://{tmp_path}/no-engine.sock"}
    try:
        out = sb.fault("disk-full")
        assert out["result"]["used_pct"] > 90
        rec = run_runbook("disk-full", archive, params)
        assert {"disk-nearly-full", "old-logs", "old-backups"} <= set(rec.causes)
        assert rec.finding("old-logs")["data"]["count"] == 3 and rec.finding("old-backups")["data"]["count"] == 3
    finally:
        sb.heal()
    assert not os.path.ismount(mnt)
    rec = run_runbook("disk-full", archive, params)   # the folder is gone: a clear error finding, no cause
    assert rec.exit_code == 0 and not _confirmed(rec) and rec.causes == []
    assert rec.finding("disk-usage")["status"] == "error" and "does not exist" in rec.finding("disk-usage")["summary"]
    diagnosis = rec.summary["diagnosis"]  # not "healthy": the disk could not be looked at
    assert diagnosis["inconclusive"] is True and "disk-usage" in diagnosis["incomplete_steps"]
    assert "not evidence that the system is healthy" in diagnosis["summary"]


def test_process_database_down_and_api_crash_heal(healthy_sandbox):
    sb = healthy_sandbox
    with pytest.raises(ValueError, match="--containers"):
        sb.fault("bad-deploy")
    try:
        sb.fault("database-down")
        assert not sb.postgres.is_running() and http_status(sb.api_url + "/health") == 503
    finally:
        sb.heal()
    assert sb.postgres.is_running()
    try:
        sb.fault("api-crash")
        assert not sb._api_running() and http_status(sb.api_url + "/health") is None
    finally:
        sb.heal()
    assert http_status(sb.api_url + "/health") == 200 and Sandbox.load(sb.state_dir).state()["host_faults"] == {}


# -- container mode ---------------------------------------------------------------------------------
def test_database_down_and_api_crash_are_api_down_then_heal(healthy_containers, container_params, archive):
    sb = healthy_containers
    for fault, causes in (("database-down", ["database-unreachable"]), ("api-crash", ["container-crashed"])):
        try:
            sb.fault(fault)
            rec = run_runbook("api-down", archive, container_params)
            assert rec.causes == causes, fault
        finally:
            sb.heal()
        assert http_status(sb.api_url + "/health") == 200, fault
    rec = run_runbook("api-down", archive, container_params)   # both healed
    assert not _confirmed(rec) and rec.causes == []


def test_bad_deploy_is_crash_on_start_then_heal(healthy_containers, container_params, archive):
    sb = healthy_containers
    try:
        out = sb.fault("bad-deploy")
        assert out["result"]["image_after"].endswith(BAD_IMAGE) and out["result"]["status"] == "exited"
        rec = run_runbook("failed-deployment", archive, container_params)
        assert rec.causes == ["crash-on-start"]
        assert any("FATAL: start-up failed" in line for line in rec.finding("logs")["data"]["examples"])
    finally:
        sb.heal()
    assert http_status(sb.api_url + "/health") == 200
    rec = run_runbook("failed-deployment", archive, container_params)
    assert not _confirmed(rec) and rec.causes == []
