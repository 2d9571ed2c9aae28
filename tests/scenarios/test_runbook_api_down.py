"""api-down against real containers on podman (the sandbox in container mode) and the Kubernetes stand-in.

Docker faults are real: a container that exits 1 at start, one killed by its memory cgroup, the
database container stopped under a running API, the API container killed. Kubernetes faults are
images the stand-in makes crash-loop or OOM, read through the real ``kubernetes`` client via a
kubeconfig in ``KUBECONFIG`` (inherited by the kernel).
"""
from __future__ import annotations

import sys

from tests.conftest import free_port, http_status, run_runbook
from tests.fixtures.kube_api import RESTARTED_AT_ANNOTATION

RUNBOOK = "api-down"
SECRET = "S3cr3t-pw-4f1d"


def _closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


# -- docker ---------------------------------------------------------------------------------------
def test_container_exiting_1_at_start_is_container_crashed(healthy_containers, container_params, api_container,
                                                          archive):
    name = api_container("crash", ["sh", "-c", f"echo 'connecting to postgresql://app:{SECRET}@db/shop'; "
                                               "echo 'FATAL: could not connect to database' >&2; exit 1"], wait=True)
    rec = run_runbook(RUNBOOK, archive, {**container_params, "api_container": name, "api_url": _closed_url()})
    assert rec.exit_code == 0 and rec.summary["status"] == "completed"
    assert rec.causes == ["container-crashed"]
    assert rec.finding("health")["status"] == "critical" and "did not answer" in rec.finding("health")["summary"]
    state = rec.finding("workload-state")
    assert state["status"] == "critical" and state["data"]["exit_code"] == 1
    assert "FATAL: could not connect to database" in rec.finding("api-logs")["summary"]
    assert SECRET not in rec.path.read_text()  # the log line's password was scrubbed
    assert [(a["action"], a["mode"]) for a in rec.actions()] == [("restart-api", "recommended")]


def test_container_killed_for_memory_is_out_of_memory(healthy_containers, container_params, api_container, archive):
    hog = "x = []\nwhile True: x.append(bytearray(8 << 20))"
    name = api_container("oom", [sys.executable, "-c", hog], mem_limit="48m", memswap_limit="48m", wait=True)
    rec = run_runbook(RUNBOOK, archive, {**container_params, "api_container": name, "api_url": _closed_url()})
    assert rec.causes == ["out-of-memory"]
    mem = rec.finding("memory")
    assert mem["status"] == "critical" and mem["data"]["exit_code"] == 137
    assert mem["data"]["limit_bytes"] == 48 * 1024 * 1024
    assert {a["action"] for a in rec.actions()} == {"restart-api", "scale-api"}


def test_database_container_stopped_is_database_unreachable(healthy_containers, container_params, archive):
    healthy_containers.stop_database()
    rec = run_runbook(RUNBOOK, archive, container_params)
    assert rec.causes == ["database-unreachable"]
    db = rec.finding("database")
    assert db["status"] == "critical" and db["data"]["db_down"] and db["data"]["api_says_down"]
    assert rec.finding("workload-state")["status"] == "ok"  # the API itself runs
    assert [(a["action"], a["mode"]) for a in rec.actions()] == [("restart-database", "recommended")]
    assert not healthy_containers.status()["postgres"]["running"]


def test_restart_database_approved_brings_the_database_back(healthy_containers, container_params, archive):
    healthy_containers.stop_database()
    assert http_status(healthy_containers.api_url + "/health") == 503
    rec = run_runbook(RUNBOOK, archive, {**container_params, "mode": "mitigate",
                                         "approved_actions": ["restart-database"]})
    (action,) = rec.actions()
    assert action["action"] == "restart-database" and action["mode"] == "executed"
    assert action["result"]["before"]["state"]["running"] is False
    assert action["result"]["after"]["state"]["running"] is True
    assert http_status(healthy_containers.api_url + "/health") == 200


def test_healthy_containers_confirm_nothing(healthy_containers, container_params, archive):
    rec = run_runbook(RUNBOOK, archive, {**container_params, "mode": "mitigate",
                                         "approved_actions": ["restart-api", "restart-database", "scale-api"]})
    assert rec.summary["diagnosis"]["confirmed"] is False and rec.causes == []
    assert rec.actions() == []
    for check in ("health", "workload-state", "memory", "database"):  # api-logs may hold earlier tests' errors
        assert rec.finding(check)["status"] == "ok", rec.finding(check)
    assert rec.finding("memory")["data"]["usage_bytes"] > 0


def _kill_api(sb) -> None:
    sb._container("api").kill()  # SIGKILL, no memory limit: a crash, not an OOM kill
    sb._container("api").wait(timeout=30)


def test_restart_api_investigate_leaves_the_container_down(healthy_containers, container_params, archive):
    _kill_api(healthy_containers)
    rec = run_runbook(RUNBOOK, archive, container_params)
    assert rec.causes == ["container-crashed"]
    assert [(a["action"], a["mode"]) for a in rec.actions()] == [("restart-api", "recommended")]
    assert not healthy_containers.status()["api"]["running"]
    assert http_status(healthy_containers.api_url + "/health") is None


def test_restart_api_approved_makes_health_answer_200(healthy_containers, container_params, archive):
    _kill_api(healthy_containers)
    rec = run_runbook(RUNBOOK, archive, {**container_params, "mode": "mitigate", "approved_actions": ["restart-api"]})
    (action,) = rec.actions()
    assert action["action"] == "restart-api" and action["mode"] == "executed"
    assert action["result"]["before"]["health"]["status"] is None
    assert action["result"]["after"]["health"]["status"] == 200
    assert http_status(healthy_containers.api_url + "/health") == 200


def test_unreachable_docker_engine_is_an_error_finding(healthy_containers, container_params, archive, tmp_path):
    rec = run_runbook(RUNBOOK, archive, {**container_params, "docker_host": f"unix://{tmp_path}/closed.sock"})
    assert rec.exit_code == 0 and rec.summary["status"] == "completed"
    assert rec.finding("health")["status"] == "ok"  # the check that needs no platform still ran
    for check in ("workload-state", "api-logs", "memory"):
        assert rec.finding(check)["status"] == "error", check
        assert "unreachable" in rec.finding(check)["summary"]
    assert rec.summary["diagnosis"]["confirmed"] is False


# -- kubernetes -------------------------------------------------------------------------------------
def test_kube_crashloop_is_container_crashed(kube_api, kube_set_image, kube_params, archive):
    kube_api.set_image_behaviour("smartamazon/api:1.5.0", "crash")
    kube_set_image("smartamazon/api:1.5.0")
    rec = run_runbook(RUNBOOK, archive, kube_params)
    assert rec.causes == ["container-crashed"]
    assert rec.finding("workload-state")["data"]["status"] == "CrashLoopBackOff"
    assert rec.finding("api-logs")["status"] == "warn"
    assert rec.finding("database")["status"] == "warn"  # no db workload on kubernetes, API silent


def test_kube_oomkilled_is_out_of_memory(kube_api, kube_set_image, kube_params, archive):
    kube_api.set_image_behaviour("smartamazon/api:hungry", "oom")
    kube_set_image("smartamazon/api:hungry")
    rec = run_runbook(RUNBOOK, archive, kube_params)
    assert rec.causes == ["out-of-memory"]
    assert rec.finding("memory")["data"]["oom_killed"] is True


def test_kube_restart_api_approved_sets_restarted_at(kube_api, kube_set_image, kube_params, archive):
    kube_api.set_image_behaviour("smartamazon/api:1.5.0", "crash")
    kube_set_image("smartamazon/api:1.5.0")
    ns, app = kube_params["kube_namespace"], kube_params["api_deployment"]
    before = kube_api.get_deployment(ns, app)["spec"]["template"]["metadata"].get("annotations") or {}
    assert RESTARTED_AT_ANNOTATION not in before
    rec = run_runbook(RUNBOOK, archive, {**kube_params, "mode": "mitigate", "approved_actions": ["restart-api"],
                                         "settle_seconds": 1.0})
    (action,) = rec.actions()
    assert action["mode"] == "executed"
    annotations = kube_api.get_deployment(ns, app)["spec"]["template"]["metadata"]["annotations"]
    assert annotations[RESTARTED_AT_ANNOTATION] == action["result"]["result"]["restarted_at"]


# -- pure checks -------------------------------------------------------------------------------------
def test_failed_stats_warn_instead_of_ok():
    from smartops_nb.checks import api_down

    st = {"name": "api", "memory_usage_bytes": None, "memory_limit_bytes": 64 * 2 ** 20, "exit_code": None,
          "detail": {"stats_error": "stats: engine said 500"}}
    f = api_down.check_memory(api_down.memory(st), 90)
    assert f.status == "warn" and "stats failed" in f.summary


def test_one_health_check_for_every_runbook():
    from smartops_nb.checks import api_down, common, failed_deployment, high_latency

    assert api_down.check_health is common.check_health is failed_deployment.check_health is high_latency.check_health
    silent = {"url": "http://api/health", "status": None, "latency_ms": None, "error": "refused", "body": ""}
    assert common.check_health(silent).status == "critical"
    assert common.check_logs(["panic: boom", "Exception in thread", "Killed", "fine"]).data["error_lines"] == 3


def test_not_confirmed_api_down_does_not_claim_health_it_did_not_measure():
    from smartops_nb.checks import api_down
    from smartops_nb.findings import Finding

    findings = [Finding("ok", "http://api/health answered 200 in 3 ms", check="health"),
                Finding("error", "API workload: could not complete (PlatformError: unreachable)",
                        check="workload-state")]
    diag = api_down.diagnose(findings, None)
    assert not diag.causes and "running" not in diag.summary and "answered 200" in diag.summary
