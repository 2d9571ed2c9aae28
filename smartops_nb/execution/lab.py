"""JupyterLab as the on-call engineer's cockpit: started on loopback with a token, this project's kernel.

:class:`Lab` starts ``jupyter lab`` from this interpreter with the project folder as its root
(``notebooks/``, ``parameters/`` and the archive visible), and hands its kernels two things in the
environment: the archive (``SMARTOPS_ARCHIVE``, where :func:`smartops_nb.save_record` writes) and the
parameters file (``SMARTOPS_PARAMETERS``, which :func:`smartops_nb.begin` applies in a live session
as ``smartops run -f`` would; see :mod:`smartops_nb.kernel.interactive`).

Kernels: the runbook notebooks ask for ``python3`` and keep asking for it, so that papermill in CI,
where only this virtual environment exists, runs them unchanged. The lab makes sure the ``python3``
it finds is this environment's (its own data folder first on ``JUPYTER_PATH``) and also registers
``smartops`` ("SmartOps (runbooks)", this interpreter) as the default for new notebooks.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from smartops_nb import catalog
from smartops_nb.contract import ARCHIVE_ENV, PARAMETERS_ENV

KERNEL_NAME = "smartops"
TOKEN_ENV = "JUPYTER_TOKEN"  # jupyter_server's IdentityProvider takes its token from here (not argv: /proc)
KERNEL_DISPLAY_NAME = "SmartOps (runbooks)"
DEMO_PARAMETERS = Path("parameters") / "demo.yaml"


def ensure_kernel(prefix: str = sys.prefix) -> Path:
    """Register the ``smartops`` kernelspec for this interpreter under ``prefix`` (idempotent)."""
    folder = Path(prefix) / "share" / "jupyter" / "kernels" / KERNEL_NAME
    try:
        spec = json.loads((folder / "kernel.json").read_text())
        if spec["argv"][0] == sys.executable and spec.get("display_name") == KERNEL_DISPLAY_NAME:
            return folder
    except (OSError, ValueError, KeyError, IndexError):
        pass
    from ipykernel.kernelspec import install

    return Path(install(kernel_name=KERNEL_NAME, display_name=KERNEL_DISPLAY_NAME, prefix=prefix))


def project_root(start: Path | None = None) -> Path:
    """The folder holding ``notebooks/``: the current one if it has them, else the installed project."""
    here = Path(start or Path.cwd()).resolve()
    return here if (here / "notebooks").is_dir() else catalog.notebook_dir().resolve().parent


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    """One JupyterLab server on 127.0.0.1; :meth:`start`, :attr:`url`, :meth:`stop` (by pid)."""

    root: Path
    archive: Path
    parameters: Path | None = None
    port: int = 0
    token: str = ""
    log_path: Path | None = None
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self.archive = Path(self.archive).resolve()
        self.parameters = Path(self.parameters).resolve() if self.parameters else None
        self.port = self.port or free_port()
        self.token = self.token or secrets.token_hex(24)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "") -> str:
        """``/lab/tree/<path>`` with the token (what a person pastes into a browser)."""
        return f"{self.base_url}/lab/tree/{path.lstrip('/')}?token={self.token}"

    def command(self) -> list[str]:
        """The server's command line: no secret in it (the token is in :meth:`environment`)."""
        cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
               # the token goes in by the environment (JUPYTER_TOKEN), not here: any local user reads argv
               "--port-retries=0", f"--ServerApp.root_dir={self.root}",
               # lets a kernel ask the page to save its notebook (smartops_nb.save_record)
               "--LabApp.expose_app_in_browser=True",
               f"--LabApp.app_settings_dir={self.settings_dir()}",
               f"--MappingKernelManager.default_kernel_name={KERNEL_NAME}"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")
        return cmd + list(self.extra_args)

    def settings_dir(self) -> Path:
        """Lab defaults for runbooks and records (a user's own settings still win).

        Every cell is attached to the page: JupyterLab's default windowing leaves the outputs of
        cells out of view unrendered, so a record's charts, Find and printing would miss them.
        """
        folder = self.root / ".smartops-lab"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "overrides.json").write_text(json.dumps({
            "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"},
            "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
        }, indent=2))
        return folder

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # this environment's kernelspecs (python3 included) before any user-level python3
        data = str(Path(sys.prefix) / "share" / "jupyter")
        env["JUPYTER_PATH"] = os.pathsep.join([data, *[p for p in env.get("JUPYTER_PATH", "").split(os.pathsep) if p]])
        env[ARCHIVE_ENV] = str(self.archive)
        env[TOKEN_ENV] = self.token
        env.pop("JUPYTER_TOKEN_FILE", None)
        if self.parameters:
            env[PARAMETERS_ENV] = str(self.parameters)
        else:
            env.pop(PARAMETERS_ENV, None)
        env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
        return env

    def start(self, timeout: float = 60) -> "Lab":
        """Start the server (its own process group) and wait until its API answers."""
        ensure_kernel()
        self.archive.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(self.command(), cwd=self.root, env=self.environment(), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT if self.log_path else None,
                                         start_new_session=True)
        finally:
            if self.log_path:
                log.close()
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}"
                                   + (f" (see {self.log_path})" if self.log_path else ""))
            try:
                with urllib.request.urlopen(f"{self.base_url}/api/status?token={self.token}", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        raise TimeoutError(f"jupyter lab did not answer on {self.base_url} within {timeout:g} s")

    def stop(self, timeout: float = 15) -> None:
        """Stop the server and its kernels: SIGTERM to its process group (by pid), SIGKILL if it lingers."""
        if self.proc is None:
            return
        pid = self.proc.pid
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        try:  # kernels live in the server's process group; make sure none outlives it
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc = None

    def __enter__(self) -> "Lab":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
