"""KubernetesPlatform, driven through the REAL `kubernetes` client, against the loopback stand-in."""
from __future__ import annotations

import socket
import time

import pytest

from smartops_nb.platforms.base import PlatformError
from smartops_nb.platforms.kubernetes import RESTARTED_AT_ANNOTATION, KubernetesPlatform
from tests.fixtures.kube import set_image
from tests.fixtures.kube_api import KubeAPIServer

NS = "shop"
APP = "smartamazon-backend"
GOOD = "smartamazon/api:1.4.0"


@pytest.fixture
def server():
    srv = KubeAPIServer()
    srv.start()
    srv.create_deployment(NS, APP, GOOD, replicas=2,
                          env={"LOG_LEVEL": "info",
                               "DATABASE_URL": {"secretKeyRef": {"name": "db", "key": "url"}}})
    yield srv
    srv.stop()


@pytest.fixture
def platform(server, tmp_path):
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig", context="sandbox")
    return KubernetesPlatform(context="sandbox", namespace=NS, config_file=str(kubeconfig))


def _set_image(server, image):
    set_image(server, image, NS, APP)  # what `kubectl set image` does


def test_healthy_state(platform):
    st = platform.state(APP)
    assert st.exists and st.running
    assert st.status == "Running"
    assert st.image == GOOD
    assert (st.replicas_desired, st.replicas_ready) == (2, 2)
    assert st.restarts == 0 and st.exit_code is None and not st.oom_killed
    assert len(st.detail["pods"]) == 2 and st.detail["revision"] == "1"
    assert platform.logs(APP, tail=2)[-1].startswith("INFO:")
    assert len(platform.logs(APP, tail=2)) == 2
    assert platform.environment(APP) == {"LOG_LEVEL": "info", "DATABASE_URL": "<from secret db key url>"}
    hist = platform.image_history(APP)
    assert [(h.revision, h.image, h.current) for h in hist] == [("1", GOOD, True)]


def test_missing_deployment(platform):
    st = platform.state("nope")
    assert not st.exists
    with pytest.raises(PlatformError, match="not found"):
        platform.restart("nope")


def test_crash_image_shows_crashloop_then_rollback_heals(server, platform):
    bad = "smartamazon/api:1.5.0"
    server.set_image_behaviour(bad, "crash")
    _set_image(server, bad)
    st = platform.state(APP)
    assert st.status == "CrashLoopBackOff"
    assert st.restarts > 0 and st.exit_code == 1 and not st.running
    assert st.image == bad and st.detail["revision"] == "2"
    assert any("DATABASE_URL" in line for line in platform.logs(APP, tail=50))

    target = platform.rollback_target(APP)
    assert (target.revision, target.image) == ("1", GOOD)
    done = platform.rollback(APP)
    assert done["image_before"] == bad and done["image_after"] == GOOD
    assert done["revision_before"] == "2" and done["to_revision"] == "1" and done["revision_after"] == "3"
    st = platform.state(APP)
    assert st.running and st.status == "Running" and st.image == GOOD and st.restarts == 0
    assert st.replicas_ready == 2
    hist = platform.image_history(APP)
    assert [(h.revision, h.image, h.current) for h in hist] == [("3", GOOD, True), ("2", bad, False)]
    # kubectl rollout undo toggles: the next undo would go back to revision 2
    assert (platform.rollback_target(APP).revision, platform.rollback_target(APP).image) == ("2", bad)
    # the reused ReplicaSet keeps no pod-template-hash in the deployment template (kubectl undo)
    dep = server.get_deployment(NS, APP)
    assert "pod-template-hash" not in dep["spec"]["template"]["metadata"]["labels"]
    # the request really was a JSON patch, as kubectl rollout undo sends
    assert any(m == "PATCH" and ct == "application/json-patch+json" for m, _, ct in server.requests)


def test_restart_count_grows(server, platform):
    server.restart_interval = 0.2
    bad = "smartamazon/api:crashy"
    server.set_image_behaviour(bad, "crash")
    _set_image(server, bad)
    first = platform.state(APP).restarts
    time.sleep(0.5)
    assert platform.state(APP).restarts > first


def test_pull_error_image(server, platform):
    server.set_image_behaviour("smartamazon/api:typo", "pull-error")
    _set_image(server, "smartamazon/api:typo")
    st = platform.state(APP)
    assert st.status == "ImagePullBackOff" and not st.running and st.restarts == 0
    assert st.detail["pods"][0]["phase"] == "Pending"
    assert platform.logs(APP) == []
    rel = platform.release(APP)
    assert (rel.image, rel.available) == ("smartamazon/api:typo", False)
    assert rel.error.startswith("ImagePullBackOff: ") and "smartamazon/api:typo" in rel.error


def test_release_of_a_running_image_is_available(platform):
    rel = platform.release(APP)
    assert (rel.image, rel.available, rel.error) == (GOOD, True, "")


def test_oom_image(server, platform):
    server.set_image_behaviour("smartamazon/api:hungry", "oom")
    _set_image(server, "smartamazon/api:hungry")
    st = platform.state(APP)
    assert st.oom_killed and st.exit_code == 137 and st.status == "OOMKilled" and st.restarts > 0


def test_rollback_without_history(platform):
    assert platform.rollback_target(APP) is None
    with pytest.raises(PlatformError, match="no previous revision"):
        platform.rollback(APP)


def test_restart_sets_annotation_and_new_replicaset(server, platform):
    done = platform.restart(APP)
    assert done["revision_before"] == "1" and done["revision_after"] == "2"
    dep = server.get_deployment(NS, APP)
    assert dep["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT_ANNOTATION] == done["restarted_at"]
    rss = server.list_replicasets(NS)
    assert len(rss) == 2
    new = [rs for rs in rss if rs["spec"]["replicas"] == 2]
    assert len(new) == 1
    assert new[0]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    assert new[0]["metadata"]["ownerReferences"][0]["name"] == APP
    pods = server.list_pods(NS)
    assert len(pods) == 2
    assert all(p["metadata"]["labels"]["pod-template-hash"] == new[0]["metadata"]["labels"]["pod-template-hash"]
               for p in pods)
    assert platform.state(APP).running
    assert [h.current for h in platform.image_history(APP)] == [True, False]


def test_scale(server, platform):
    done = platform.scale(APP, 3)
    assert (done["replicas_before"], done["replicas_after"]) == (2, 3)
    assert len(server.list_pods(NS)) == 3
    st = platform.state(APP)
    assert (st.replicas_desired, st.replicas_ready) == (3, 3) and len(st.detail["pods"]) == 3
    platform.scale(APP, 0)
    st = platform.state(APP)
    assert st.replicas_desired == 0 and not st.running and st.status == "ScaledToZero"
    with pytest.raises(PlatformError):
        platform.scale(APP, -1)


def test_wrong_token(server, tmp_path):
    kubeconfig = server.write_kubeconfig(tmp_path / "bad", token="not-the-token")
    plat = KubernetesPlatform(namespace=NS, config_file=str(kubeconfig))
    with pytest.raises(PlatformError, match="401"):
        plat.state(APP)


def test_kubeconfig_from_env(server, tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(server.write_kubeconfig(tmp_path / "env-kc")))
    assert KubernetesPlatform(namespace=NS).state(APP).running


def test_missing_kubeconfig(tmp_path):
    plat = KubernetesPlatform(config_file=str(tmp_path / "absent"))
    with pytest.raises(PlatformError, match="cannot load Kubernetes config"):
        plat.state(APP)


def test_closed_port_fails_fast(tmp_path):
    srv = KubeAPIServer()
    srv.start()
    kubeconfig = srv.write_kubeconfig(tmp_path / "kc")
    srv.stop()  # the port is now closed
    plat = KubernetesPlatform(namespace=NS, config_file=str(kubeconfig), request_timeout=2)
    t0 = time.monotonic()
    with pytest.raises(PlatformError, match="unreachable") as info:
        plat.state(APP)
    assert time.monotonic() - t0 < 5
    assert "\n" not in str(info.value)


def test_silent_server_times_out(tmp_path):
    """A port that accepts but never answers: the request timeout ends the call."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        srv = KubeAPIServer()
        srv.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        kubeconfig = srv.write_kubeconfig(tmp_path / "kc")
        plat = KubernetesPlatform(namespace=NS, config_file=str(kubeconfig), request_timeout=1)
        t0 = time.monotonic()
        with pytest.raises(PlatformError):
            plat.state(APP)
        assert time.monotonic() - t0 < 3  # no urllib3 read retries (would be 4x the timeout)
    finally:
        sock.close()


def test_server_speaks_k8s_errors(server):
    """Unknown paths and objects get Status objects, like the real API server."""
    import json
    import urllib.request

    def get(path, token=server.token):
        req = urllib.request.Request(server.url + path, headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    code, body = get(f"/apis/apps/v1/namespaces/{NS}/deployments/ghost")
    assert code == 404 and json.loads(body)["kind"] == "Status" and json.loads(body)["reason"] == "NotFound"
    code, body = get("/apis/batch/v1/jobs")
    assert code == 404
    code, body = get(f"/api/v1/namespaces/{NS}/pods", token="x")
    assert code == 401 and json.loads(body)["reason"] == "Unauthorized"
    code, body = get(f"/api/v1/namespaces/{NS}/events")
    assert code == 200 and json.loads(body)["kind"] == "EventList"
