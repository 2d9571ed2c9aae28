"""DockerPlatform against a real Docker-API engine (podman), with real containers.

Containers run the busybox base image; the HTTP server runs the host's Python, mounted
read-only (see smartops_sandbox.podman).
"""
from __future__ import annotations

import socket
import sys
import time
import urllib.request
import uuid

import pytest

from smartops_nb.platforms import PlatformError
from smartops_nb.platforms.docker import PREVIOUS_IMAGE_LABEL, DockerPlatform
from smartops_nb.waiting import until
from smartops_sandbox.podman import derive_image, host_python_volumes

RUN = uuid.uuid4().hex[:6]


@pytest.fixture
def platform(podman_engine):
    p = DockerPlatform(base_url=podman_engine, timeout=10, stop_timeout=1)
    yield p
    p.close()


@pytest.fixture
def make(podman_client):
    """``make(suffix, image, command, **run_kwargs)`` -> container name; all removed afterwards."""
    names: list[str] = []

    def _make(suffix, image, command, wait=False, **kwargs):
        name = f"sa-{RUN}-{suffix}"
        names.append(name)
        ctr = podman_client.containers.run(image, command, name=name, detach=True, **kwargs)
        if wait:
            ctr.wait(timeout=30)
        return name

    yield _make
    import docker

    for name in names:
        for ctr in podman_client.containers.list(all=True, filters={"name": name}):
            try:
                ctr.remove(force=True)
            except docker.errors.NotFound:
                pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def test_running_python_http_server_state(platform, make, base_image):
    port = _free_port()
    name = make("web", base_image, [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                volumes=host_python_volumes(), network_mode="host", mem_limit="128m",
                environment={"APP_ENV": "test", "DATABASE_URL": "postgresql://u:p@127.0.0.1/db"})
    assert until(lambda: _http_ok(f"http://127.0.0.1:{port}/"), 15), platform.logs(name)
    st = platform.state(name)
    assert st.exists and st.running and st.status == "running"
    assert st.exit_code is None and not st.oom_killed
    assert st.memory_limit_bytes == 128 * 1024 * 1024
    assert st.memory_usage_bytes is not None and st.memory_usage_bytes > 0
    assert st.image == "smartamazon-base:1"
    env = platform.environment(name)
    assert env["APP_ENV"] == "test" and env["DATABASE_URL"].startswith("postgresql://")


def test_missing_container_is_not_an_error(platform):
    st = platform.state(f"sa-{RUN}-does-not-exist")
    assert st.exists is False and st.running is False
    with pytest.raises(PlatformError, match="no container"):
        platform.logs(f"sa-{RUN}-does-not-exist")


def test_container_exiting_1_at_start(platform, make, base_image):
    name = make("crash", base_image,
                ["sh", "-c", "echo starting; echo 'FATAL: could not connect to database at postgres:5432' >&2; exit 1"],
                wait=True)
    st = platform.state(name)
    assert st.exists and not st.running
    assert st.exit_code == 1 and st.status == "exited" and not st.oom_killed
    lines = platform.logs(name, tail=50)
    assert any("FATAL: could not connect to database" in line for line in lines), lines


def test_memory_limit_kill_is_flagged_as_likely_oom(platform, make, base_image):
    hog = "x = []\nwhile True: x.append(bytearray(8 << 20))"
    name = make("oom", base_image, [sys.executable, "-c", hog], volumes=host_python_volumes(),
                mem_limit="48m", memswap_limit="48m", wait=True)
    st = platform.state(name)
    assert not st.running and st.exit_code == 137
    assert st.oom_killed is True
    assert st.memory_limit_bytes == 48 * 1024 * 1024
    assert st.detail["state"]["ExitCode"] == 137
    assert st.detail.get("oom_inferred") or st.detail["state"]["OOMKilled"]


def test_restart_brings_a_fixable_container_back(platform, make, base_image, tmp_path):
    script = ("if [ -f /state/marker ]; then echo 'recovered'; exec sleep 300; "
              "else touch /state/marker; echo 'first start: cache not warm' >&2; exit 1; fi")
    name = make("fixable", base_image, ["sh", "-c", script],
                volumes={str(tmp_path): {"bind": "/state", "mode": "rw"}}, wait=True)
    assert platform.state(name).exit_code == 1
    result = platform.restart(name)
    assert result["action"] == "restart" and result["status_before"] == "exited"
    st = until(lambda: (s := platform.state(name)).running and s, 10)
    assert st and st.running
    assert any("recovered" in line for line in platform.logs(name))


def test_scale_creates_and_removes_replicas(platform, make, base_image):
    name = make("scale", base_image, ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"],
                environment={"ROLE": "backend"}, labels={"app": "smartamazon"})
    try:
        up = platform.scale(name, 3)
        assert up["created"] == [f"{name}-2", f"{name}-3"]
        for replica in up["created"]:
            st = platform.state(replica)
            assert st.running, st
            assert platform.environment(replica)["ROLE"] == "backend"
        down = platform.scale(name, 1)
        assert down["removed"] == [f"{name}-2", f"{name}-3"]
        assert not platform.state(f"{name}-2").exists
    finally:
        platform.scale(name, 1)


@pytest.fixture
def api_images(podman_client, base_image):
    derive_image(podman_client, "smartamazon-api:1", base=base_image,
                 cmd=["sh", "-c", "echo \"api v$APP_VERSION ready\"; trap 'exit 0' TERM; while true; do sleep 1; done"],
                 env={"APP_VERSION": "1"}, labels={"com.smartamazon.version": "1"})
    time.sleep(1.1)  # distinct creation times: :2 is the newer one
    derive_image(podman_client, "smartamazon-api:2", base=base_image,
                 cmd=["sh", "-c", "echo \"api v$APP_VERSION: KeyError: 'PAYMENT_URL'\" >&2; exit 1"],
                 env={"APP_VERSION": "2"}, labels={"com.smartamazon.version": "2"})
    return "smartamazon-api:1", "smartamazon-api:2"


def test_rollback_from_broken_tag_to_previous(platform, make, api_images, podman_client, tmp_path):
    good, bad = api_images
    name = make("api", bad, None, wait=True, environment={"DATABASE_URL": "postgresql://db"},
                labels={"app": "smartamazon-api"}, network_mode="host", mem_limit="64m",
                volumes={str(tmp_path): {"bind": "/data", "mode": "rw"}})
    before = platform.state(name)
    assert before.exit_code == 1 and before.image == bad
    history = platform.image_history(name)
    assert [r.image for r in history[:2]] == [bad, good]
    assert history[0].current and not history[1].current
    assert platform.rollback_target(name).image == good  # what rollback() goes to, said before it runs

    result = platform.rollback(name)
    assert result["image_before"] == bad and result["image_after"] == good
    st = until(lambda: (s := platform.state(name)).running and s, 10)
    assert st and st.running and st.image == good
    assert st.memory_limit_bytes == 64 * 1024 * 1024
    env = platform.environment(name)
    assert env["APP_VERSION"] == "1" and env["DATABASE_URL"] == "postgresql://db"
    assert until(lambda: any("api v1 ready" in l for l in platform.logs(name)), 5)
    attrs = podman_client.containers.get(name).attrs
    assert attrs["Config"]["Labels"]["app"] == "smartamazon-api"
    assert attrs["Config"]["Labels"]["com.smartamazon.version"] == "1"
    assert attrs["HostConfig"]["NetworkMode"] == "host"
    assert any(m["Destination"] == "/data" for m in attrs["Mounts"])
    # the old container is gone, only the new one holds the name
    assert len(podman_client.containers.list(all=True, filters={"name": f"{name}-rollback"})) == 0
    # a second rollback does not flip back to the broken version, and the target says so
    assert platform.rollback_target(name) is None
    with pytest.raises(PlatformError, match="no previous image"):
        platform.rollback(name)


def test_previous_image_label_names_the_rollback_target(platform, make, api_images, base_image):
    good, bad = api_images
    name = make("labelled", bad, None, wait=True, labels={PREVIOUS_IMAGE_LABEL: base_image})
    history = platform.image_history(name)
    assert history[0].image == bad and history[1].image == base_image


def test_previous_image_gone_from_the_engine_is_never_the_target(platform, make, api_images):
    good, bad = api_images
    name = make("gone", bad, None, wait=True, labels={PREVIOUS_IMAGE_LABEL: "smartamazon-api:0-pruned"})
    history = platform.image_history(name)
    assert [(r.image, r.exists) for r in history[:3]] == [(bad, True), ("smartamazon-api:0-pruned", False),
                                                          (good, True)]
    assert platform.rollback_target(name).image == good   # the newest earlier image the engine has


def test_release_reads_a_failed_recreate_from_the_engines_events(platform, make, api_images, podman_client):
    good, _ = api_images
    name = make("recreate", good, ["sh", "-c", "exit 0"], wait=True)
    assert platform.release(name).detail.get("recreate_failed") is None   # it is there: nothing failed
    podman_client.containers.get(name).remove(force=True)                 # the deploy's "docker rm"
    rel = platform.release(name, intended="smartamazon-api:9-never-built")
    assert (rel.image, rel.available) == ("smartamazon-api:9-never-built", False)
    assert rel.detail["recreate_failed"] and rel.detail["image_before"] == good
    assert good in rel.engine_images and rel.error


def test_rollback_without_previous_image_raises(platform, make, base_image):
    name = make("noprev", base_image, ["sh", "-c", "exit 1"], wait=True)
    assert platform.rollback_target(name) is None
    with pytest.raises(PlatformError, match="no previous image"):
        platform.rollback(name)
    assert platform.state(name).exists  # nothing was touched


def test_disk_usage_returns_numbers(platform, make, base_image):
    make("df", base_image, ["sh", "-c", "echo hi > /tmp/x"], wait=True)
    du = platform.disk_usage()
    for key in ("images", "containers", "volumes", "build_cache"):
        for field in ("count", "size_bytes", "reclaimable_bytes"):
            assert isinstance(du[key][field], int) and du[key][field] >= 0, (key, field, du)
    assert du["images"]["count"] >= 1 and du["images"]["size_bytes"] > 0
    assert du["containers"]["count"] >= 1
    assert du["total_bytes"] >= du["reclaimable_bytes"] >= 0


def test_prune_removes_stopped_containers_and_unused_images(platform, make, podman_client, base_image):
    derive_image(podman_client, "smartops-prune-me:1", base=base_image, cmd=["true"])
    stopped = make("prune", "smartops-prune-me:1", None, wait=True)
    result = platform.prune()
    assert result["reclaimed_bytes"] >= 0 and isinstance(result["reclaimed_bytes"], int)
    assert not platform.state(stopped).exists
    assert not podman_client.images.list(name="smartops-prune-me")


def test_unreachable_engine_raises_quickly(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(PlatformError, match="unreachable"):
        DockerPlatform(base_url=f"unix://{tmp_path}/nothing.sock", timeout=2).state("api")
    assert time.monotonic() - t0 < 5


def test_engine_that_never_answers_times_out(tmp_path):
    path = str(tmp_path / "silent.sock")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(8)  # accepts connections into the backlog, never answers
    try:
        t0 = time.monotonic()
        with pytest.raises(PlatformError, match="unreachable"):
            DockerPlatform(base_url=f"unix://{path}", timeout=1).state("api")
        assert time.monotonic() - t0 < 5
    finally:
        srv.close()
