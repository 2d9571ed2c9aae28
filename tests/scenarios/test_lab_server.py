"""`smartops lab`: JupyterLab on loopback with a token, this environment's kernels, the parameters file."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from smartops_nb.execution import lab


def _lab_processes(root) -> list[str]:
    """Command lines of the JupyterLab servers serving ``root`` (found in /proc)."""
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if f"--ServerApp.root_dir={root}" in cmdline:
            out.append(cmdline)
    return out


def test_smartops_lab_prints_a_working_url_and_stops_on_sigterm(tmp_path):
    (tmp_path / "notebooks").mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "smartops_nb.cli", "lab", "--root", str(tmp_path), "-f", ""],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and "/lab/tree/notebooks?token=" in url
        base, token = url.split("/lab/")[0], url.split("token=")[1]
        with urllib.request.urlopen(f"{base}/api/kernelspecs?token={token}", timeout=10) as r:
            specs = json.load(r)
        assert {"python3", lab.KERNEL_NAME} <= set(specs["kernelspecs"]) and specs["default"] == lab.KERNEL_NAME
        with pytest.raises(urllib.error.HTTPError):  # the token is required
            urllib.request.urlopen(f"{base}/api/contents", timeout=10)
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{base}/api/contents?token=not-{token}", timeout=10)
        assert (tmp_path / "incidents").is_dir()
        (server,) = _lab_processes(tmp_path)
        assert token not in server  # the token is not on its command line
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert proc.returncode == 0


@pytest.mark.timeout(120)
def test_sigterm_during_start_up_stops_jupyterlab(tmp_path):
    (tmp_path / "notebooks").mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "smartops_nb.cli", "lab", "--root", str(tmp_path), "-f", ""],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not _lab_processes(tmp_path) and time.monotonic() < deadline:  # started, not yet answering
            time.sleep(0.05)
        assert _lab_processes(tmp_path) and proc.poll() is None
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert proc.returncode == 0 and "http://" not in out, err
    deadline = time.monotonic() + 10
    while _lab_processes(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _lab_processes(tmp_path) == []

