"""The runbooks on Docker Compose: the sandbox as a real Compose project (services backend,
postgres, redis) on podman's Docker API, found, read and acted on through Compose.

Faults are real: every backend replica killed (SIGQUIT), the backend grown until its memory limit
kills it, the postgres service stopped, a new image that dies at start deployed with ``up -d``.
Every action goes through the real ``docker-compose``, and each test asks ``docker-compose ps``
(a person's view) whether it agrees with what the runbook did.
"""
from __future__ import annotations

import contextlib
import re

import pytest

from smartops_nb import catalog
from smartops_nb.platforms.compose import ComposePlatform
from smartops_sandbox.compose import API_IMAGE
from smartops_sandbox.host_faults import BAD_IMAGE
from tests.conftest import free_port, http_status, run_runbook

pytestmark = pytest.mark.scenario

PS_LINE = re.compile(r"^(?P<name>\S+_(?P<service>[a-z]+)_(?P<number>\d+))\s.*\s(?P<state>Up|Exit -?\d+)")


def ps(compose_cli, service: str) -> dict[str, str]:
    """``docker-compose ps`` for one service: replica name -> ``Up`` / ``Exit N``."""
    out = {}
    for line in compose_cli("ps").splitlines():
        m = PS_LINE.match(line)
        if m and m["service"] == service:
            out[m["name"]] = m["state"]
    return out


def engine_replicas(sb, role: str = "api") -> dict[str, str]:
    """What the engine holds for the service, by Compose's labels: name -> status."""
    return {c.name: c.status for c in sb.replicas(role)}


def test_crashed_backend_is_container_crashed_and_restart_api_brings_every_replica_back(
        healthy_compose, compose_params, compose_cli, archive):
    sb = healthy_compose
    compose_cli("up", "-d", "--no-deps", "--scale", "backend=2", "backend")
    sb._wait_healthy(60)
    crash = sb.fault("api-crash")["result"]
    assert len(crash["killed"]) == 2 and set(crash["exit_codes"].values()) == {131}
    assert http_status(sb.api_url + "/health") is None

    rec = run_runbook("api-down", archive, {**compose_params, "mode": "mitigate", "approved_actions": ["restart-api"]})

    assert rec.causes == ["container-crashed"]
    state = rec.finding("workload-state")["data"]
    assert state["replicas_desired"] == 2 and state["replicas_ready"] == 0 and state["exit_code"] == 131
    (action,) = rec.actions("executed")
    assert action["action"] == "restart-api"
    assert action["result"]["result"]["command"].split()[-4:] == ["restart", "-t", "10", "backend"]
    assert action["result"]["after"]["state"]["running"] is True
    assert http_status(sb.api_url + "/health") == 200
    assert set(ps(compose_cli, "backend").values()) == {"Up"} and len(ps(compose_cli, "backend")) == 2


def test_out_of_memory_then_scale_api_runs_three_replicas_compose_knows(healthy_compose, compose_params,
                                                                       compose_cli, archive):
    sb = healthy_compose
    oom = sb.fault("api-oom")["result"]
    assert oom["exit_code"] == 137

    rec = run_runbook("api-down", archive, {**compose_params, "mode": "mitigate", "approved_actions": ["scale-api"]})

    assert rec.causes == ["out-of-memory"]
    assert rec.finding("memory")["data"]["limit_bytes"] == 256 * 2 ** 20
    (action,) = rec.actions("executed")
    assert action["action"] == "scale-api" and len(action["result"]["result"]["created"]) == 2
    assert http_status(sb.api_url + "/health") == 200
    listed = ps(compose_cli, "backend")
    assert len(listed) == 3 and set(listed.values()) == {"Up"}
    assert listed.keys() == engine_replicas(sb).keys()   # nothing beside Compose
    ids = {c.name: c.id for c in sb.replicas("api")}

    # Compose takes the runbook's replicas as its own: at the same scale nothing is recreated ...
    compose_cli("up", "-d", "--scale", "backend=3")
    assert {c.name: c.id for c in sb.replicas("api")} == ids
    # ... and a plain `up -d` goes back to the file's one replica, cleanly: ps and the engine agree
    compose_cli("up", "-d")
    assert ps(compose_cli, "backend") == {name: "Up" for name in engine_replicas(sb)}
    assert len(engine_replicas(sb)) == 1
    assert http_status(sb.api_url + "/health") == 200


def test_postgres_stopped_is_database_unreachable_and_restart_database_brings_it_back(
        healthy_compose, compose_params, compose_cli, archive):
    sb = healthy_compose
    sb.fault("database-down")
    assert http_status(sb.api_url + "/health") == 503
    assert set(ps(compose_cli, "postgres").values()) == {"Exit 0"}

    rec = run_runbook("api-down", archive, {**compose_params, "mode": "mitigate",
                                            "approved_actions": ["restart-database"]})

    assert rec.causes == ["database-unreachable"]
    (action,) = rec.actions("executed")
    assert action["action"] == "restart-database"
    assert action["result"]["before"]["state"]["running"] is False
    assert action["result"]["after"]["state"]["running"] is True
    assert set(ps(compose_cli, "postgres").values()) == {"Up"}
    assert http_status(sb.api_url + "/health") == 200


@pytest.fixture
def bad_image_removed(healthy_compose):
    """The bad tag goes once the test is healed: the engine is the session's, and another test's
    image history (other tags of ``smartamazon-api``) must not find it."""
    yield
    import docker

    healthy_compose.heal()   # nothing runs the bad image any more
    with contextlib.suppress(docker.errors.APIError):
        healthy_compose.client.images.remove(BAD_IMAGE)


def test_bad_image_is_crash_on_start_and_rollback_runs_the_previous_image(healthy_compose, compose_params,
                                                                          compose_cli, archive, bad_image_removed):
    sb = healthy_compose
    deployed = sb.fault("bad-deploy")["result"]
    assert deployed["image_after"] == BAD_IMAGE and deployed["status"] == "exited"

    rec = run_runbook("failed-deployment", archive, {**compose_params, "mode": "mitigate",
                                                     "approved_actions": ["rollback"]})

    assert rec.causes == ["crash-on-start"]
    (action,) = rec.actions("executed")
    done = action["result"]["rollback"]
    assert done["image_before"] == BAD_IMAGE and done["image_after"] == API_IMAGE
    assert "docker-compose.smartops-rollback.yml" in done["command"]
    assert http_status(sb.api_url + "/health") == 200
    (ctr,) = sb.replicas("api")
    assert ctr.attrs["Config"]["Image"].endswith(API_IMAGE) and ctr.attrs["Config"]["Entrypoint"] in (None, [])
    assert ps(compose_cli, "backend") == {ctr.name: "Up"}
    # rolling back again must not return to the broken image
    platform = ComposePlatform(sb.project, base_url=sb.docker_url)
    target = platform.rollback_target("backend")
    assert target is None or target.image != BAD_IMAGE


def test_release_is_the_files_image_as_compose_resolves_it(healthy_compose):
    """``${SMARTAMAZON_API_IMAGE:-smartamazon-api:1}`` in the project file, the .env of its folder."""
    rel = ComposePlatform(healthy_compose.project, base_url=healthy_compose.docker_url).release("backend")
    assert (rel.image, rel.available) == (API_IMAGE, True)
    assert "docker-compose.yml" in rel.source and API_IMAGE in rel.engine_images


@pytest.mark.parametrize("runbook", sorted(r for r in catalog.RUNBOOKS if r != "incident-review"))
def test_healthy_compose_project_confirms_nothing(runbook, healthy_compose, compose_params, archive, tmp_path):
    params = {**compose_params}
    if runbook == "disk-full":   # the project's own folders, not whatever fills this machine's /
        (tmp_path / "log").mkdir()
        (tmp_path / "backups").mkdir()
        params.update(disk_paths=[str(tmp_path)], log_dirs=[str(tmp_path / "log")],
                      backup_dirs=[str(tmp_path / "backups")])
    if runbook == "high-latency":
        params.update(sample_seconds=3.0)
    rec = run_runbook(runbook, archive, params)
    assert rec.exit_code == 0 and rec.causes == [], rec.summary["diagnosis"]
    assert rec.summary["diagnosis"]["confirmed"] is False
    assert not rec.actions("executed")


def test_missing_project_or_service_is_an_error_finding_naming_what_exists(healthy_compose, compose_params,
                                                                          archive):
    project = healthy_compose.project
    rec = run_runbook("api-down", archive, {**compose_params, "compose_project": "no-such-shop",
                                            "api_url": f"http://127.0.0.1:{free_port()}"})
    state = rec.finding("workload-state")
    assert state["status"] == "error"
    assert "no Compose project 'no-such-shop'" in state["summary"] and project in state["summary"]
    assert rec.summary["diagnosis"]["confirmed"] is False

    rec = run_runbook("failed-deployment", archive, {**compose_params, "api_service": "frontend"})
    state = rec.finding("workload-state")
    assert state["status"] == "error"
    assert "no service 'frontend'" in state["summary"] and "backend, postgres, redis" in state["summary"]
