"""The SmartAmazon sandbox against real PostgreSQL, Redis and API processes, with a real fault."""
from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import urllib.error
import urllib.request

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from smartops_nb.cli.main import main as smartops_main
from smartops_nb.waiting import until
from smartops_sandbox import Sandbox
from smartops_sandbox.postgres_server import PostgresServer, _pid_alive, _pid_is
from smartops_sandbox.redis_server import RedisServer

MAX_CONNECTIONS = 60   # 60 - 3 superuser - 3 reserved = 54 ordinary slots = 90% of max_connections


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, headers: dict | None = None, method: str = "GET", timeout: float = 10) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {}, method=method,
                                 data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    sb = Sandbox(tmp_path_factory.mktemp("sandbox"), _free_port(), _free_port(), _free_port(),
                 max_connections=MAX_CONNECTIONS)
    try:
        sb.up(timeout=60)
        yield sb
    finally:
        sb.down()


def _connect(sb: Sandbox, user: str) -> psycopg.Connection:
    return psycopg.connect(sb.postgres.dsn(user=user), connect_timeout=3, autocommit=True)


def test_health_metrics_and_cache(sandbox):
    status, body = _get(sandbox.api_url + "/health")
    assert status == 200 and json.loads(body) == {"status": "ok", "database": "ok", "redis": "ok"}

    status, body = _get(sandbox.api_url + "/api/search?q=protein")
    first = json.loads(body)
    assert status == 200 and first["count"] == 20 and first["cached"] is False
    assert all(r["category"] == "protein" for r in first["results"])
    status, body = _get(sandbox.api_url + "/api/search?q=protein")
    second = json.loads(body)
    assert status == 200 and second["cached"] is True and second["results"] == first["results"]

    status, body = _get(sandbox.api_url + "/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    hist = families["http_request_duration_seconds"]
    assert hist.type == "histogram"
    labels = [s.labels for s in hist.samples if s.name.endswith("_bucket")]
    assert any(lb.get("handler") == "/api/search" and lb.get("le") == "10.0" and lb.get("status") == "200"
               for lb in labels)
    hits = {s.name: s.value for f in families.values() for s in f.samples}
    assert hits["smartamazon_cache_hits_total"] >= 1 and hits["smartamazon_cache_misses_total"] >= 1
    assert hits["smartamazon_db_pool_size"] == 5

    # The bootstrap's healthy state: the index exists, the roles are what the runbook expects.
    with _connect(sandbox, "smartops") as c:
        assert c.execute("SELECT 1 FROM pg_indexes WHERE indexname='idx_products_category_rating'").fetchone()
        assert c.execute("SELECT count(*) FROM products").fetchone()[0] >= 300_000
        assert not c.execute("SELECT rolsuper FROM pg_roles WHERE rolname='smartops'").fetchone()[0]
        assert c.execute("SHOW max_connections").fetchone()[0] == str(MAX_CONNECTIONS)


def test_admin_requires_token_and_known_fault(sandbox):
    assert _get(sandbox.api_url + "/admin/heal", method="POST")[0] == 403
    assert _get(sandbox.api_url + "/admin/heal", {"X-Sandbox-Token": "wrong"}, "POST")[0] == 403
    with pytest.raises(ValueError, match="connection-leak"):
        sandbox.fault("no-such-fault")


def test_connection_leak_and_heal(sandbox):
    result = sandbox.fault("connection-leak")["result"]
    assert result["leaked_extra"] > 0 and result["refusal"]
    try:
        with pytest.raises(psycopg.OperationalError, match="too many clients|reserved"):
            _connect(sandbox, "smartamazon")
        with _connect(sandbox, "smartops") as c:   # pg_use_reserved_connections: the runbook still gets in
            used = c.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type='client backend'").fetchone()[0]
            max_conn = int(c.execute("SHOW max_connections").fetchone()[0])
            leaked = c.execute("SELECT count(*) FROM pg_stat_activity WHERE usename='smartamazon' "
                               "AND application_name='smartamazon-api' AND state='idle'").fetchone()[0]
        assert used >= 0.9 * max_conn, (used, max_conn)
        assert leaked >= MAX_CONNECTIONS - 6

        status, body = _get(sandbox.api_url + "/api/search?q=vitamins")
        assert status == 503 and b"connection pool exhausted" in body
        assert "connection pool exhausted" in sandbox.api_log.read_text()
        status, body = _get(sandbox.api_url + "/health")
        assert status == 503 and json.loads(body)["redis"] == "ok"
    finally:
        sandbox.heal()

    with _connect(sandbox, "smartamazon") as c:
        assert c.execute("SELECT 1").fetchone() == (1,)
    status, body = _get(sandbox.api_url + "/api/search?q=vitamins")
    assert status == 200 and json.loads(body)["count"] == 20
    assert _get(sandbox.api_url + "/health")[0] == 200


def test_slow_queries_and_cache_bypass(sandbox):
    sandbox.fault("slow-queries")
    sandbox.fault("cache-bypass")
    try:
        with _connect(sandbox, "smartops") as c:
            assert not c.execute("SELECT 1 FROM pg_indexes WHERE indexname='idx_products_category_rating'").fetchone()
        for _ in range(2):  # an uncached ranked search without its index: ~5 s alone, more beside the users
            status, body = _get(sandbox.api_url + "/api/search?q=toys", timeout=60)
            assert status == 200 and json.loads(body)["cached"] is False
    finally:
        sandbox.heal()
    with _connect(sandbox, "smartops") as c:
        assert c.execute("SELECT 1 FROM pg_indexes WHERE indexname='idx_products_category_rating'").fetchone()
    _get(sandbox.api_url + "/api/search?q=toys")
    assert json.loads(_get(sandbox.api_url + "/api/search?q=toys")[1])["cached"] is True


def test_a_fault_left_in_the_database_does_not_outlive_down(sandbox):
    """API faults end with the API process; what slow-queries changed in PostgreSQL must not greet
    the next `sandbox up` unannounced (status would list no fault while the index is missing)."""
    sandbox.fault("slow-queries")
    sandbox.down()
    sandbox.up(timeout=60)
    with _connect(sandbox, "postgres") as c:
        assert c.execute("SELECT 1 FROM pg_indexes WHERE indexname='idx_products_category_rating'").fetchone()
        assert c.execute("SELECT rolconfig FROM pg_roles WHERE rolname='smartamazon'").fetchone()[0] is None


def test_load_from_state_and_down(sandbox):
    other = Sandbox.load(sandbox.state_dir)   # what the CLI does in another process
    assert other.params() == sandbox.params()
    assert other.params()["postgres_dsn"].startswith("postgresql://smartops@127.0.0.1:")
    st = other.status()
    assert all(st[k]["running"] for k in ("api", "postgres", "redis"))
    pids = [st[k]["pid"] for k in ("api", "postgres", "redis")]
    assert all(pids)

    other.down()   # stops processes it did not start, by pid
    sandbox.down()
    other.down()   # idempotent
    assert not any(_pid_alive(p) for p in pids)
    assert not any(s["running"] for s in sandbox.status().values())


def test_state_file_created_private(sandbox):
    old = os.umask(0)   # even with a permissive umask the token never hits the disk readable
    try:
        sandbox._write_state()
    finally:
        os.umask(old)
    assert stat.S_IMODE((sandbox.state_dir / "state.json").stat().st_mode) == 0o600
    assert not (sandbox.state_dir / "state.tmp").exists()


def test_stale_postmaster_pid_is_never_signalled_and_start_works(sandbox):
    """A postmaster.pid whose pid now belongs to another program: not running, not stopped, and
    ``start()`` removes the stale file instead of skipping the start (or pg_ctl refusing)."""
    sandbox.down()
    pg = PostgresServer(sandbox.postgres.data_dir, sandbox.postgres.port,
                        max_connections=MAX_CONNECTIONS, log_path=sandbox.postgres.log_path)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert until(lambda: _pid_is(other.pid, b"time.sleep"), 10, 0.05)  # exec done: not our cmdline
        (pg.data_dir / "postmaster.pid").write_text(f"{other.pid}\n{pg.data_dir}\n")
        assert _pid_alive(other.pid) and not pg.is_running()
        pg.stop()
        assert other.poll() is None
        pg.start()
        try:
            assert pg.is_running() and pg.pid != other.pid
            with psycopg.connect(pg.dsn(user="smartops"), connect_timeout=3) as c:
                assert c.execute("SELECT 1").fetchone() == (1,)
        finally:
            pg.stop()
        assert not pg.is_running() and other.poll() is None
    finally:
        other.kill()
        other.wait(5)


def test_recycled_pids_are_never_signalled(tmp_path):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # right after fork, /proc/PID/cmdline is still the parent's until exec has happened
        assert until(lambda: _pid_is(other.pid, b"time.sleep"), 10, 0.05)
        assert not _pid_is(other.pid, b"redis-server")
        assert not _pid_is(None, b"python") and not _pid_is(0, b"python")

        r = RedisServer(tmp_path / "redis", _free_port(), pid=other.pid)   # e.g. adopted from state.json
        assert not r.is_running()
        r.stop()
        assert other.poll() is None

        pg = PostgresServer(tmp_path / "pgdata", _free_port())
        pg.data_dir.mkdir()
        (pg.data_dir / "postmaster.pid").write_text(f"{other.pid}\n")
        assert not pg.is_running()
        pg.stop()
        assert other.poll() is None

        sb = Sandbox(tmp_path / "sb", _free_port(), _free_port(), _free_port())
        sb.api_pid = other.pid
        assert not sb._api_running()
        sb._stop_api()
        assert other.poll() is None

        from smartops_sandbox import cli as sandbox_cli
        from smartops_sandbox.podman import PodmanService

        (tmp_path / "sb" / "podman").mkdir(parents=True)
        (tmp_path / "sb" / "podman" / "podman-service.pid").write_text(f"{other.pid}\n")
        assert sandbox_cli._engine_pid(PodmanService(tmp_path / "sb" / "podman")) is None
        sandbox_cli._stop_engine(tmp_path / "sb")
        assert other.poll() is None and not (tmp_path / "sb" / "podman" / "podman-service.pid").exists()
    finally:
        other.kill()
        other.wait(5)


def test_cli_fault_and_heal_with_api_down(tmp_path, capsys):
    sb = Sandbox(tmp_path, _free_port(), _free_port(), _free_port())   # recorded, nothing running
    sb._write_state()
    for argv in (["sandbox", "fault", "connection-leak", "--dir", str(tmp_path)],
                 ["sandbox", "heal", "--dir", str(tmp_path)]):
        assert smartops_main(argv) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"smartops sandbox: cannot reach the sandbox API at {sb.api_url}")
        assert "\n" not in err and "Traceback" not in err
