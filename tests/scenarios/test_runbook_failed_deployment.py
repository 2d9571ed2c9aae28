"""failed-deployment against real faults: bad versions really deployed on podman and on the
Kubernetes API stand-in, the API's /health really probed, rollbacks really run."""
from __future__ import annotations

import pytest

from tests.conftest import run_runbook

CAUSES = {"crash-on-start", "image-unavailable", "health-check-failing"}


@pytest.fixture
def run(archive, planted_secret):
    """Run the runbook; assert it completed and the planted secret is nowhere in what it saved."""
    def _run(params):
        rec = run_runbook("failed-deployment", archive, params)
        assert rec.exit_code == 0 and rec.summary["status"] == "completed"
        leaked = [p.name for p in archive.rglob("*") if p.is_file()
                  and planted_secret in p.read_text(errors="replace")]
        assert not leaked, f"the planted secret reached {leaked}"
        return rec
    return _run


def _approved(params):
    return {**params, "mode": "mitigate", "approved_actions": ["rollback"]}


# ----------------------------------------------------------------------------- docker (podman)

def test_docker_healthy_confirms_nothing(docker_rollout, run):
    rec = run(_approved(docker_rollout.params()))
    assert rec.summary["diagnosis"]["confirmed"] is False and rec.causes == []
    assert rec.actions() == []
    assert rec.finding("health")["status"] == "ok" and rec.finding("workload-state")["status"] == "ok"
    assert rec.finding("environment")["data"]["variables"]["DB_PASSWORD"] == "******"


def test_docker_crash_on_start_investigate_changes_nothing(docker_rollout, deploy_images, run):
    docker_rollout.deploy(deploy_images["crash"])
    rec = run(docker_rollout.params())
    assert rec.causes == ["crash-on-start"]
    assert rec.finding("workload-state")["data"]["exit_code"] == 1
    assert rec.finding("images")["data"]["previous_image"] == deploy_images["good"]
    assert any("FATAL" in line for line in rec.finding("logs")["data"]["examples"])  # the line, scrubbed
    (action,) = rec.actions()
    assert action["mode"] == "recommended"
    assert action["result"]["preview"]["would_roll_back_to"] == deploy_images["good"]
    ctr = docker_rollout.container()  # still the broken version, still down
    assert ctr.attrs["Config"]["Image"].endswith(deploy_images["crash"]) and ctr.status == "exited"
    assert docker_rollout.health() is None


def test_docker_missing_tag_is_image_unavailable_and_rollback_restores(docker_rollout, deploy_images, run):
    done = docker_rollout.deploy(deploy_images["missing"])
    assert "image not known" in done["error"]
    rec = run(_approved(docker_rollout.params()))
    assert rec.causes == ["image-unavailable"]
    (action,) = rec.actions()
    assert action["mode"] == "executed"
    assert action["result"]["rollback"]["image_before"] == deploy_images["missing"]
    assert action["result"]["after"]["image"] == deploy_images["good"] and action["result"]["after"]["running"]
    assert action["result"]["health_after"]["status"] == 200
    assert docker_rollout.health() == 200


def test_docker_unhealthy_version_rolled_back_when_approved(docker_rollout, deploy_images, run):
    docker_rollout.deploy(deploy_images["unhealthy"])
    assert docker_rollout.wait_health(503)
    rec = run(_approved(docker_rollout.params()))
    assert rec.causes == ["health-check-failing"]
    assert rec.finding("health")["data"]["status"] == 503
    (action,) = rec.actions()
    assert action["mode"] == "executed"
    result = action["result"]
    assert (result["before"]["image"], result["after"]["image"]) == (deploy_images["unhealthy"], deploy_images["good"])
    ctr = docker_rollout.container()
    assert ctr.status == "running" and ctr.attrs["Config"]["Image"].endswith(deploy_images["good"])
    assert docker_rollout.health() == 200


def test_docker_unreachable_engine_is_an_error_and_health_still_runs(docker_rollout, run, tmp_path):
    rec = run(docker_rollout.params(docker_host=f"unix://{tmp_path}/no-engine.sock"))
    assert rec.finding("workload-state")["status"] == "error"
    assert rec.finding("health")["status"] == "ok"
    assert rec.causes == []


# ----------------------------------------------------------------------------- kubernetes

def test_kube_crash_image_is_crash_on_start(kube_rollout, run, planted_secret):
    kube_rollout.deploy("smartamazon/api:1.5.0", "crash",
                    logs=["INFO: starting", f"FATAL: auth failed for password {planted_secret}"])
    rec = run(kube_rollout.params())
    assert rec.causes == ["crash-on-start"]
    assert rec.finding("rollout")["status"] == "critical"
    assert [a["mode"] for a in rec.actions()] == ["recommended"]
    assert kube_rollout.image() == "smartamazon/api:1.5.0"  # investigation rolled nothing back


def test_kube_pull_error_is_image_unavailable(kube_rollout, run):
    kube_rollout.deploy("smartamazon/api:1.5.0-typo", "pull-error")
    rec = run(kube_rollout.params())
    assert rec.causes == ["image-unavailable"]
    assert "ImagePullBackOff" in rec.finding("workload-state")["summary"]


def test_kube_rollback_approved_makes_previous_image_current(kube_rollout, run):
    kube_rollout.deploy("smartamazon/api:1.5.0", "crash")
    rec = run(_approved(kube_rollout.params()))
    assert rec.causes == ["crash-on-start"]
    (action,) = rec.actions()
    assert action["mode"] == "executed"
    history = action["result"]["image_history_after"]
    assert history[0] == {**history[0], "image": kube_rollout.good, "current": True}
    assert action["result"]["after"]["running"] and kube_rollout.image() == kube_rollout.good


# ----------------------------------------------------------------------------- pure checks

def test_images_check_names_the_platforms_rollback_target():
    import pandas as pd

    from smartops_nb.checks import failed_deployment as fd

    history = pd.DataFrame([{"revision": "3", "image": "api:1", "created_at": None, "current": True},
                            {"revision": "2", "image": "api:2", "created_at": None, "current": False}])
    assert fd.check_images(history, {"revision": "2", "image": "api:2"}).data["previous_image"] == "api:2"
    none = fd.check_images(history, None)
    assert none.status == "warn" and none.data["previous_image"] is None
    assert fd.ran_for_seconds({"detail": {"state": {"StartedAt": "2026-01-01T00:00:00.123456789Z",
                                                    "FinishedAt": "2026-01-01T00:00:02.5Z"}}}) == pytest.approx(2.38,
                                                                                                               abs=0.01)
    assert fd.ran_for_seconds({"detail": {"state": {"StartedAt": "0001-01-01T00:00:00Z"}}}) is None
