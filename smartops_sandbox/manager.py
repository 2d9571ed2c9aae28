"""Starts, inspects, breaks, heals and stops one SmartAmazon sandbox (PostgreSQL + Redis + API).

Everything runs as detached local processes; ``state.json`` in the state dir records ports,
pids, DSNs and the admin token so another process (the CLI) can ``Sandbox.load()`` and control it.
Process start-up sits behind ``_start_*``/``_stop_*`` methods so a container mode can replace them.
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
from pathlib import Path
from typing import Any

from .postgres_server import PostgresServer, _pid_is, _wait_gone
from .redis_server import RedisServer

SANDBOX_DIR_ENV = "SMARTOPS_SANDBOX_DIR"  # the sandbox's state folder (default ~/.smartops/sandbox)

DEFAULT_PORTS = {"api": 18000, "postgres": 15432, "redis": 16379}
STATE_FILE = "state.json"
API_MARKER = b"smartops_sandbox.api"   # in the API process's /proc/PID/cmdline (see _pid_is)


def default_state_dir() -> Path:
    return Path(os.environ.get(SANDBOX_DIR_ENV) or Path.home() / ".smartops" / "sandbox")


def default_ports() -> dict[str, int]:
    """api/postgres/redis ports, overridable by SMARTOPS_SANDBOX_{API,POSTGRES,REDIS}_PORT."""
    return {k: int(os.environ.get(f"SMARTOPS_SANDBOX_{k.upper()}_PORT") or v) for k, v in DEFAULT_PORTS.items()}


def known_faults() -> list[str]:
    """Every fault name: the API's (``api.FAULTS``) and the managing process's (``host_faults``)."""
    return sorted(fault_descriptions())


def fault_descriptions() -> dict[str, str]:
    from .api import FAULTS
    from .host_faults import HOST_FAULTS

    out = {name: f.description for name, f in FAULTS.items()}
    out.update({name: f.description for name, f in HOST_FAULTS.items()})
    return out


def _http(method: str, url: str, headers: dict | None = None, timeout: float = 5) -> tuple[int, Any]:
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


class Sandbox:
    """A live SmartAmazon stand-in: ``up()``, ``status()``, ``fault(name)``, ``heal()``, ``down()``."""

    def __init__(self, state_dir: Path, api_port: int = DEFAULT_PORTS["api"],
                 pg_port: int = DEFAULT_PORTS["postgres"], redis_port: int = DEFAULT_PORTS["redis"],
                 max_connections: int = 60, pool_size: int = 5, reserved_connections: int = 3,
                 token: str | None = None) -> None:
        self.state_dir = Path(state_dir).absolute()
        self.api_port = int(api_port)
        self.pool_size = int(pool_size)
        self.token = token or secrets.token_hex(16)
        self.postgres = PostgresServer(self.state_dir / "pgdata", pg_port, max_connections=max_connections,
                                       reserved_connections=reserved_connections,
                                       log_path=self.state_dir / "postgres.log")
        self.redis = RedisServer(self.state_dir / "redis", redis_port, log_path=self.state_dir / "redis.log")
        self.api_pid: int | None = None
        self._api_proc: subprocess.Popen | None = None
        # host faults injected (name -> what inject returned); None: not read yet, state.json's stand
        self.host_faults: dict[str, dict] | None = None

    # -- construction from state ---------------------------------------------------------------
    @classmethod
    def load(cls, state_dir: Path) -> "Sandbox":
        st = json.loads((Path(state_dir) / STATE_FILE).read_text())
        sb = cls(state_dir, st["api"]["port"], st["postgres"]["port"], st["redis"]["port"],
                 max_connections=st["postgres"]["max_connections"], pool_size=st["api"]["pool_size"],
                 reserved_connections=st["postgres"]["reserved_connections"], token=st["token"])
        sb.api_pid = st["api"].get("pid")
        sb.redis._pid = st["redis"].get("pid")
        return sb

    # -- urls ----------------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def api_log(self) -> Path:
        return self.state_dir / "api.log"

    def params(self) -> dict[str, Any]:
        """Runbook notebook parameters for this sandbox."""
        return {
            "api_url": self.api_url,
            "postgres_dsn": self.postgres.dsn(user="smartops"),
            "redis_url": self.redis.url,
            "postgres_admin_dsn": self.postgres.dsn(user="postgres"),
            "environment": "sandbox",
        }

    def state(self) -> dict[str, Any]:
        pg = self.postgres
        return {
            "version": 1,
            "mode": "process",
            "state_dir": str(self.state_dir),
            "token": self.token,
            "api": {"port": self.api_port, "pid": self.api_pid, "url": self.api_url,
                    "pool_size": self.pool_size, "log": str(self.api_log)},
            "postgres": {"port": pg.port, "pid": pg.pid, "data_dir": str(pg.data_dir),
                         "max_connections": pg.max_connections,
                         "superuser_reserved_connections": pg.superuser_reserved_connections,
                         "reserved_connections": pg.reserved_connections,
                         "app_dsn": pg.dsn(user="smartamazon"), "monitor_dsn": pg.dsn(user="exporter"),
                         "admin_dsn": pg.dsn(user="postgres"), "log": str(pg.log_path)},
            "redis": {"port": self.redis.port, "pid": self.redis.pid, "url": self.redis.url,
                      "maxmemory": self.redis.maxmemory, "policy": self.redis.policy,
                      "log": str(self.redis.log_path)},
            "params": self.params(),
            "host_faults": self._recorded_host_faults() if self.host_faults is None else self.host_faults,
        }

    def _write_state(self) -> None:
        path = self.state_dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        data = json.dumps(self.state(), indent=2).encode()
        try:
            tmp.unlink()   # a leftover of an interrupted write (O_EXCL below)
        except FileNotFoundError:
            pass
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)   # holds the admin token
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        tmp.replace(path)

    def _adopt_state(self) -> None:
        """Take over pids (and the token) another Sandbox object recorded, so no process is orphaned."""
        try:
            st = json.loads((self.state_dir / STATE_FILE).read_text())
        except (OSError, ValueError):
            return
        if self.api_pid is None and self._api_proc is None and st["api"].get("pid"):
            self.api_pid = st["api"]["pid"]
            if self._api_running():
                self.token = st.get("token", self.token)
            else:
                self.api_pid = None
        if self.redis.pid is None and st["redis"].get("pid"):
            self.redis._pid = st["redis"]["pid"]
            if not self.redis.is_running():
                self.redis._pid = None

    # -- lifecycle -----------------------------------------------------------------------------
    def up(self, timeout: float = 60) -> dict[str, Any]:
        """Start PostgreSQL (bootstrapping on first start), Redis and the API; wait for /health 200."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._adopt_state()
        try:
            self._start_postgres()
            self._start_redis()
            self._write_state()
            self._start_api()
            self._write_state()
            self._wait_healthy(timeout)
        except BaseException:
            self.down()
            raise
        return self.status()

    def _start_postgres(self) -> None:
        was_running = self.postgres.is_running()
        self.postgres.start()
        marker = self.state_dir / ".bootstrapped"
        if not marker.exists():
            self.postgres.bootstrap()
            marker.write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
        elif not was_running:
            # API faults live in the API process and end with `down`; what one left in the database
            # (slow-queries drops the index and sets a role option) must not outlive it unseen
            self.postgres.bootstrap()

    def _start_redis(self) -> None:
        self.redis.start()

    def _start_api(self) -> None:
        if self._api_running():
            return
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["PYTHONUNBUFFERED"] = "1"
        with open(self.api_log, "ab") as logf:
            self._api_proc = subprocess.Popen(
                [sys.executable, "-m", "smartops_sandbox.api", "--config", str(self.state_dir / STATE_FILE)],
                stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=env, cwd=str(self.state_dir))
        self.api_pid = self._api_proc.pid

    def _api_running(self) -> bool:
        if self._api_proc is not None:
            return self._api_proc.poll() is None
        return _pid_is(self.api_pid, API_MARKER)   # not a recycled pid

    def _stop_api(self, timeout: float = 10) -> None:
        pid = self.api_pid
        if pid and self._api_running():
            for sig in (signal.SIGTERM, signal.SIGKILL):
                if not self._api_running():
                    break
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break
                if self._api_proc is not None:
                    try:
                        self._api_proc.wait(timeout)
                    except subprocess.TimeoutExpired:
                        pass
                if _wait_gone(pid, timeout):
                    break
        if self._api_proc is not None:
            try:
                self._api_proc.wait(1)
            except subprocess.TimeoutExpired:
                pass
            self._api_proc = None

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if not self._api_running():
                raise RuntimeError(f"API process exited; log tail:\n{self._tail(self.api_log)}")
            try:
                status, body = _http("GET", self.api_url + "/health", timeout=3)
                if status == 200:
                    return
                last = (status, body)
            except OSError as e:
                last = e
            time.sleep(0.2)
        raise TimeoutError(f"API not healthy after {timeout}s: {last!r}; log tail:\n{self._tail(self.api_log)}")

    @staticmethod
    def _tail(path: Path, n: int = 30) -> str:
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def restart_api(self, timeout: float = 60) -> dict[str, Any]:
        """What the runbook's "restart the API" does: a new process, hence a fresh pool."""
        self._stop_api()
        self._start_api()
        self._write_state()
        self._wait_healthy(timeout)
        return self.status()

    def down(self) -> None:
        """Stop API, Redis and PostgreSQL by pid (and unmount the disk fault); safe to call twice."""
        self._adopt_state()
        self._down_host_faults()
        self._stop_api()
        self.redis.stop()
        self.postgres.stop()
        self.api_pid = None
        self.redis._pid = None
        if self.state_dir.exists():
            self._write_state()

    def status(self) -> dict[str, Any]:
        health: Any
        try:
            health = _http("GET", self.api_url + "/health", timeout=3) if self._api_running() else None
        except OSError as e:
            health = str(e)
        return {
            "api": {"pid": self.api_pid, "running": self._api_running(), "port": self.api_port,
                    "url": self.api_url, "health": health},
            "postgres": {"pid": self.postgres.pid, "running": self.postgres.is_running(),
                         "port": self.postgres.port, "dsn": self.postgres.dsn(user="smartops")},
            "redis": {"pid": self.redis.pid, "running": self.redis.is_running(),
                      "port": self.redis.port, "url": self.redis.url},
        }

    # -- faults --------------------------------------------------------------------------------
    def fault(self, name: str) -> dict[str, Any]:
        """Inject ``name``: a host fault (:mod:`.host_faults`, run here) or one of the API's."""
        from .host_faults import HOST_FAULTS, mode_of

        known = known_faults()
        if name not in known:
            raise ValueError(f"unknown fault {name!r}; known faults: {', '.join(known)}")
        if name not in HOST_FAULTS:
            return self._admin(f"/admin/fault/{name}")
        hf = HOST_FAULTS[name]
        if mode_of(self) not in hf.modes:
            raise ValueError(f"fault {name} needs the container sandbox (smartops sandbox up --containers)")
        self._sync_host_faults()
        if name in self.host_faults:   # injected already: undo it first, so "before" stays the real before
            hf.heal(self, self.host_faults.pop(name))
            self._write_state()
        try:
            result = hf.inject(self)
        except ValueError:
            raise   # refused before changing anything
        except BaseException as e:   # half done: record it so heal undoes what was done
            self.host_faults[name] = {"error": f"{type(e).__name__}: {e}"}
            self._write_state()
            raise
        self.host_faults[name] = result
        self._write_state()
        return {"fault": name, "where": "host", "result": result}

    def heal(self) -> dict[str, Any]:
        """Undo every host fault recorded in state.json, then every fault of the API."""
        from .host_faults import HEAL_ORDER, HOST_FAULTS

        self._sync_host_faults()
        healed: dict[str, Any] = {}
        for name in sorted(self.host_faults, key=lambda n: HEAL_ORDER.index(n) if n in HEAL_ORDER else 99):
            if name in HOST_FAULTS:
                healed[name] = HOST_FAULTS[name].heal(self, self.host_faults[name])
            del self.host_faults[name]
            self._write_state()
        api = self._admin("/admin/heal")
        if isinstance(api.get("healed"), dict):
            return {**api, "healed": {**api["healed"], **healed}}
        return {**api, **healed}

    def _recorded_host_faults(self) -> dict[str, dict]:
        try:
            return dict(json.loads((self.state_dir / STATE_FILE).read_text()).get("host_faults") or {})
        except (OSError, ValueError):
            return {}

    def _sync_host_faults(self) -> None:
        """Take the host faults another process recorded (state.json is the truth)."""
        self.host_faults = self._recorded_host_faults()

    def _down_host_faults(self) -> None:
        """``down``: the services stop (Redis, PostgreSQL, the API come back as configured), so
        only the tmpfs needs undoing; the record is cleared."""
        from .host_faults import on_down

        on_down(self)
        self.host_faults = {}

    def _admin(self, path: str) -> dict[str, Any]:
        status, body = _http("POST", self.api_url + path, {"X-Sandbox-Token": self.token}, timeout=60)
        if status != 200:
            raise RuntimeError(f"POST {path} -> {status}: {body}")
        return body
