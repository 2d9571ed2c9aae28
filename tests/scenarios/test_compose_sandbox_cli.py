"""`smartops sandbox up --compose | status | fault | heal | down` from the command line: the
sandbox's own podman API service, the Compose project on it, and nothing left running afterwards."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from smartops_nb.platforms.compose import compose_cli
from smartops_sandbox.podman import podman_available
from tests.conftest import free_port, http_status, require

pytestmark = pytest.mark.scenario


def test_sandbox_up_compose_status_fault_heal_down():
    require("podman", podman_available() is not None, "apt-get install -y podman runc busybox-static")
    require("docker-compose", compose_cli() is not None, "apt-get install -y docker-compose")
    # not under pytest's basetemp: PostgreSQL's system user must traverse the folder's parents
    folder = Path(tempfile.mkdtemp(prefix="smartops-test-compose-cli-"))
    ports = {"API": free_port(), "POSTGRES": free_port(), "REDIS": free_port()}
    env = {**os.environ, **{f"SMARTOPS_SANDBOX_{k}_PORT": str(v) for k, v in ports.items()}}

    def sandbox(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "smartops_nb.cli", "sandbox", *args, "--dir", str(folder)],
                              capture_output=True, text=True, env=env, timeout=300)

    try:
        up = sandbox("up", "--compose")
        assert up.returncode == 0, up.stderr
        params = json.loads(up.stdout.splitlines()[-1].removeprefix("parameters: "))
        assert params["platform"] == "compose" and params["compose_project"] == "smartamazon"
        assert params["api_service"] == "backend" and params["docker_host"].endswith("/podman/podman.sock")
        assert json.loads((folder / "state.json").read_text())["mode"] == "compose"
        assert sandbox("status").returncode == 0

        crash = sandbox("fault", "api-crash")
        assert crash.returncode == 0 and '"exit_codes": {"smartamazon_backend_1": 131}' in crash.stdout
        assert sandbox("status").returncode == 1
        assert sandbox("heal").returncode == 0
        assert http_status(f"http://127.0.0.1:{ports['API']}/health") == 200

        again = sandbox("up", "--containers")   # another mode over a running one: refused, nothing changed
        assert again.returncode != 0 and "runs in compose mode" in again.stderr
    finally:
        down = sandbox("down")
        stopped = not (folder / "podman" / "podman-service.pid").exists()
        shutil.rmtree(folder, ignore_errors=True)
    assert down.returncode == 0 and stopped, down.stderr
