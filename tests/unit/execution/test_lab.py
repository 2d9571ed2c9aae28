"""`smartops lab`: JupyterLab on loopback with a token, this environment's kernels, the parameters file."""
from __future__ import annotations

import argparse
import json
import os
import sys

import pytest

from smartops_nb.execution import lab
from smartops_nb.kernel import interactive
from tests.conftest import REPO


def test_kernel_registration_is_idempotent(tmp_path):
    first = lab.ensure_kernel(str(tmp_path))
    spec = json.loads((first / "kernel.json").read_text())
    assert spec["argv"][0] == sys.executable and spec["display_name"] == lab.KERNEL_DISPLAY_NAME
    mtime = (first / "kernel.json").stat().st_mtime_ns
    assert lab.ensure_kernel(str(tmp_path)) == first and (first / "kernel.json").stat().st_mtime_ns == mtime


def test_server_command_is_loopback_with_token_and_this_environment(tmp_path):
    server = lab.Lab(tmp_path, tmp_path / "incidents", REPO / "parameters" / "demo.yaml", port=8999, token="t0k")
    cmd = server.command()
    assert cmd[:4] == [sys.executable, "-m", "jupyter", "lab"]
    assert {"--ip=127.0.0.1", "--no-browser", "--port=8999"} <= set(cmd)
    assert not any("t0k" in arg for arg in cmd)  # any local user can read a command line (/proc/PID/cmdline)
    assert ("--allow-root" in cmd) == (os.geteuid() == 0)
    env = server.environment()
    assert env["JUPYTER_TOKEN"] == "t0k"
    assert env["JUPYTER_PATH"].split(os.pathsep)[0] == os.path.join(sys.prefix, "share", "jupyter")
    assert env["SMARTOPS_PARAMETERS"] == str((REPO / "parameters" / "demo.yaml").resolve())
    assert env["SMARTOPS_ARCHIVE"] == str((tmp_path / "incidents").resolve())
    assert server.url("notebooks") == "http://127.0.0.1:8999/lab/tree/notebooks?token=t0k"


def test_parameters_file_applies_in_a_live_session_only(tmp_path, monkeypatch):
    f = tmp_path / "p.yaml"
    f.write_text("environment: demo\nidle_minutes: 0.05\nredis_url: redis://x:6379/0\ncontacts: {}\n")
    namespace = {"environment": "unspecified", "idle_minutes": 5.0, "mode": "investigate"}
    monkeypatch.setenv(interactive.PARAMETERS_ENV, str(f))
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert interactive.apply_parameters_file("db-pool-exhausted", namespace) == {}  # papermill, nbclient...
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "x.ipynb"))
    monkeypatch.setenv("SMARTOPS_HEADLESS", "1")
    assert interactive.apply_parameters_file("db-pool-exhausted", namespace) == {}  # the runner's kernels
    monkeypatch.delenv("SMARTOPS_HEADLESS")
    applied = interactive.apply_parameters_file("db-pool-exhausted", namespace)
    assert applied["values"] == {"environment": "demo", "idle_minutes": 0.05}  # only this runbook's names
    assert namespace == {"environment": "demo", "idle_minutes": 0.05, "mode": "investigate"}


def test_parameters_file_of_the_wrong_type_is_refused(tmp_path, monkeypatch):
    from smartops_nb.params import ParameterError

    f = tmp_path / "p.yaml"
    f.write_text("idle_minutes: soon\n")
    monkeypatch.setenv(interactive.PARAMETERS_ENV, str(f))
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "x.ipynb"))
    monkeypatch.delenv("SMARTOPS_HEADLESS", raising=False)
    with pytest.raises(ParameterError, match="idle_minutes"):
        interactive.apply_parameters_file("db-pool-exhausted", {"idle_minutes": 5.0})


def test_jupyterlab_exiting_by_itself_is_exit_1(tmp_path, monkeypatch, capsys):
    from smartops_nb.cli import lab as cli_lab

    class FakeProc:
        def wait(self, timeout=None):
            return 3

    stopped = []
    monkeypatch.setattr(lab.Lab, "start", lambda self, timeout=60: setattr(self, "proc", FakeProc()) or self)
    monkeypatch.setattr(lab.Lab, "stop", lambda self, timeout=15: stopped.append(True))
    (tmp_path / "notebooks").mkdir()
    args = argparse.Namespace(root=str(tmp_path), archive=None, parameters_file="", port=0, token="t",
                              timeout=5)
    assert cli_lab.cmd_lab(args) == 1 and stopped
    assert "jupyter lab exited with 3" in capsys.readouterr().err

