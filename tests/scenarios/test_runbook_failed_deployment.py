"""failed-deployment against real faults: bad versions really deployed on podman and on the
Kubernetes API stand-in, the API's /health really probed, rollbacks really run."""
from __future__ import annotations

import re

import pytest

from tests.conftest import free_port, run_runbook

CAUSES = {"crash-on-start", "image-unavailable", "health-check-failing"}
NOT_THERE = re.compile(r"no such image|image not known", re.I)   # podman's words for a missing image


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
    assert docker_rollout.run_health_check()["Status"] == "healthy"
    rec = run(_approved(docker_rollout.params()))
    assert rec.summary["diagnosis"]["confirmed"] is False and rec.causes == []
    assert rec.finding("engine-health")["data"]["status"] == "healthy" and rec.finding("release")["status"] == "ok"
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


def test_docker_failed_recreate_is_image_unavailable(docker_rollout, deploy_images, run):
    """The naive ``stop; rm; run`` deploy of a tag the engine does not have leaves no container:
    the engine's events say it was removed and not created again; the image is the one named."""
    good, missing = deploy_images["good"], deploy_images["missing"]
    done = docker_rollout.deploy(missing)
    assert "image not known" in done["error"] and done["status"] == "missing"

    rec = run(docker_rollout.params(release_image=missing))
    assert rec.causes == ["image-unavailable"]
    release = rec.finding("release")["data"]
    assert (release["image"], release["available"]) == (missing, False)
    assert good in release["engine_images"] and NOT_THERE.search(release["error"])
    assert release["detail"]["recreate_failed"] and release["detail"]["image_before"] == good
    assert "a recreate that failed" in rec.summary["diagnosis"]["summary"]
    assert [a["mode"] for a in rec.actions()] == ["recommended"]

    rec = run(docker_rollout.params())   # no release_image: what happened is said, the cause is not claimed
    assert rec.causes == [] and "a recreate that failed" in rec.finding("release")["summary"]


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


def test_docker_failing_healthcheck_is_cited_when_health_is_unreachable(docker_rollout, deploy_images, run):
    """The engine's own HEALTHCHECK (run once with podman's healthcheck: no timer runs here) says why,
    while /health cannot be reached from where the runbook runs."""
    docker_rollout.deploy(deploy_images["unhealthy"])
    assert docker_rollout.wait_health(503)
    assert docker_rollout.run_health_check()["Status"] == "unhealthy"
    rec = run(docker_rollout.params(api_url=f"http://127.0.0.1:{free_port()}"))
    assert rec.causes == ["health-check-failing"]
    engine = rec.finding("engine-health")
    assert engine["status"] == "critical" and engine["data"]["failing_streak"] >= 1
    assert "503" in engine["data"]["last_output"]
    assert engine["data"]["last_output"] in rec.summary["diagnosis"]["summary"]


def test_docker_pruned_previous_image_is_not_a_rollback_target(lone_rollout, lone_repo, podman_client, run):
    lone_rollout.deploy(lone_repo["crash"])
    podman_client.images.remove(lone_repo["good"])   # pruned after the deploy
    rec = run(lone_rollout.params())
    assert rec.causes == ["crash-on-start"]
    images = rec.finding("images")["data"]
    assert images["previous_image"] is None and images["gone"] == [lone_repo["good"]]
    assert "The rollback cannot run" in rec.summary["diagnosis"]["summary"]
    (action,) = rec.actions()
    preview = action["result"]["preview"]
    assert preview["would_roll_back_to"] is None and preview["gone_from_engine"] == [lone_repo["good"]]
    assert "no longer exists in the engine" in preview["cannot_run"]


# ----------------------------------------------------------------------------- compose

def test_compose_missing_tag_is_image_unavailable_not_crash(compose_rollout, deploy_images, run):
    good, missing = deploy_images["good"], deploy_images["missing"]
    done = compose_rollout.deploy(missing)
    assert done["exit_code"] != 0, done["output"]
    rec = run(compose_rollout.params())
    assert rec.causes == ["image-unavailable"], rec.summary["diagnosis"]
    release = rec.finding("release")["data"]
    assert (release["image"], release["available"]) == (missing, False)
    assert good in release["engine_images"] and NOT_THERE.search(release["error"])
    assert "docker-compose.yml" in release["source"]
    assert rec.finding("images")["data"]["previous_image"] == good   # what the replicas still run
    (action,) = rec.actions()
    assert action["mode"] == "recommended" and action["result"]["preview"]["would_roll_back_to"] == good


def test_compose_missing_tag_rolled_back_when_approved(compose_rollout, deploy_images, run):
    compose_rollout.deploy(deploy_images["missing"])
    rec = run(_approved(compose_rollout.params()))
    assert rec.causes == ["image-unavailable"]
    (action,) = rec.actions()
    assert action["mode"] == "executed", action
    done = action["result"]["rollback"]
    assert (done["image_before"], done["image_after"]) == (deploy_images["missing"], deploy_images["good"])
    assert action["result"]["after"]["running"] and compose_rollout.health() == 200


def test_compose_healthy_release_confirms_nothing(compose_rollout, run):
    rec = run(compose_rollout.params())
    assert rec.causes == [] and rec.finding("release")["status"] == "ok"
    assert rec.finding("release")["data"]["available"] is True


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


@pytest.mark.parametrize("behaviour,reason", [("pull-error", "ImagePullBackOff"), ("err-image-pull", "ErrImagePull")])
def test_kube_pull_error_is_image_unavailable(kube_rollout, run, behaviour, reason):
    kube_rollout.deploy("smartamazon/api:1.5.0-typo", behaviour)
    rec = run(kube_rollout.params())
    assert rec.causes == ["image-unavailable"]
    assert reason in rec.finding("workload-state")["summary"]
    release = rec.finding("release")["data"]
    assert (release["image"], release["available"]) == ("smartamazon/api:1.5.0-typo", False)
    assert release["error"].startswith(reason)


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
