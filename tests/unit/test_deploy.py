"""deploy/: the Compose file and the Kubernetes manifests for team mode, checked without starting them
(no image registry is reachable here). Compose validates its own file (`docker-compose config`); the
manifests are parsed, and every `smartops` command line in them is parsed by the real CLI parser."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import yaml

from smartops_nb.cli.main import _parser
from tests.conftest import REPO, require

COMPOSE = REPO / "deploy" / "smartops" / "docker-compose.yml"
KUBE = sorted((REPO / "deploy" / "kubernetes").glob("*.yaml"))


def _docs() -> list[dict]:
    return [d for path in KUBE for d in yaml.safe_load_all(path.read_text()) if d]


def _by(kind: str, name: str) -> dict:
    return next(d for d in _docs() if d["kind"] == kind and d["metadata"]["name"] == name)


def test_docker_compose_validates_the_compose_file():
    require("docker-compose", shutil.which("docker-compose") is not None, "apt-get install docker-compose")
    env = {**os.environ, "SMARTOPS_QUEUE_PASSWORD": "pw", "SMARTOPS_SERVE_TOKEN": "tok"}
    out = subprocess.run(["docker-compose", "-f", str(COMPOSE), "config"], capture_output=True, text=True,
                         timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    cfg = yaml.safe_load(out.stdout)
    assert set(cfg["services"]) == {"queue-db", "serve-a", "serve-b", "worker"}
    for name in ("serve-a", "serve-b", "worker"):
        svc = cfg["services"][name]
        assert svc["environment"]["SMARTOPS_QUEUE"].startswith("postgresql://smartops:pw@queue-db:5432/")
        _parser().parse_args(svc["command"])  # a command line the CLI accepts
    assert cfg["services"]["serve-a"]["environment"]["SMARTOPS_SERVE_TOKEN"] == "tok"
    # without the secrets set, compose refuses rather than starting with empty ones
    bare = {k: v for k, v in os.environ.items() if not k.startswith("SMARTOPS_")}
    out = subprocess.run(["docker-compose", "-f", str(COMPOSE), "config"], capture_output=True, text=True,
                         timeout=60, env=bare)
    assert out.returncode != 0 and "SMARTOPS_QUEUE_PASSWORD" in out.stderr


def test_kubernetes_serve_has_two_replicas_behind_a_service_and_worker_runs_jobs():
    serve, worker = _by("Deployment", "smartops-serve"), _by("Deployment", "smartops-worker")
    service = _by("Service", "smartops")
    assert serve["spec"]["replicas"] == 2
    assert service["spec"]["selector"] == serve["spec"]["template"]["metadata"]["labels"]
    assert serve["spec"]["selector"]["matchLabels"] == serve["spec"]["template"]["metadata"]["labels"]
    (s,), (w,) = serve["spec"]["template"]["spec"]["containers"], worker["spec"]["template"]["spec"]["containers"]
    assert _parser().parse_args(s["args"]).command == "serve"
    assert _parser().parse_args(w["args"]).command == "worker"
    assert s["readinessProbe"]["httpGet"]["path"] == "/healthz"
    # the worker's grace period covers its drain timeout
    drain = float(w["args"][w["args"].index("--drain-timeout") + 1])
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > drain


@pytest.mark.parametrize("deployment", ["smartops-serve", "smartops-worker"])
def test_the_queue_dsn_comes_from_a_secret(deployment):
    (c,) = _by("Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in c["env"]}
    ref = env["SMARTOPS_QUEUE"]["valueFrom"]["secretKeyRef"]
    secret = _by("Secret", ref["name"])
    assert ref["key"] in secret["stringData"] and "value" not in env["SMARTOPS_QUEUE"]
    for vol in _by("Deployment", deployment)["spec"]["template"]["spec"]["volumes"]:
        if "secret" in vol:
            _by("Secret", vol["secret"]["secretName"])
        if "persistentVolumeClaim" in vol:
            _by("PersistentVolumeClaim", vol["persistentVolumeClaim"]["claimName"])
