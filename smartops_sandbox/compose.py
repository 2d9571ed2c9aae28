"""The sandbox's Compose mode: SmartAmazon as the Compose project ``smartamazon`` (services
``backend``, ``postgres``, ``redis`` from ``deploy/compose/docker-compose.yml``), brought up by the
real ``docker-compose`` on the sandbox's podman API service.

Only *who creates the containers* changes from the container mode: :class:`ComposeSandbox` reuses
:class:`~smartops_sandbox.containers.ContainerSandbox`'s way of running each process (its
``_start_postgres``/``_start_redis``/``_start_api`` build the commands and mounts), but its
``_run`` writes that per-host part into ``STATE_DIR/compose/docker-compose.host.yml`` and asks
Compose to bring the service up, so every container carries Compose's labels and
``docker-compose ps`` sees exactly what runs. A deploy changes ``SMARTAMAZON_API_IMAGE`` in the
project's ``.env`` and runs ``up -d`` as a team would.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from smartops_nb.platforms.compose import (CLI, PROJECT_LABEL, ROLLBACK_FILE, SERVICE_LABEL, ComposeProject,
                                           compose_cli, replica_number)

from .containers import ContainerSandbox
from .manager import STATE_FILE, Sandbox
from .podman import BASE_IMAGE, build_base_image, derive_image

COMPOSE_FILE = Path(__file__).resolve().parents[1] / "deploy" / "compose" / "docker-compose.yml"
PROJECT = "smartamazon"
SERVICES = {"api": "backend", "postgres": "postgres", "redis": "redis"}
API_IMAGE = "smartamazon-api:1"        # the compose file's default backend image
IMAGE_ENV = "SMARTAMAZON_API_IMAGE"
HOST_FILE = "docker-compose.host.yml"


class ComposeError(RuntimeError):
    """docker-compose is missing, or a Compose command failed."""


def _volume_specs(volumes: dict[str, dict[str, str]]) -> list[str]:
    """``containers.run``'s ``volumes=`` as Compose's ``HOST:CONTAINER:MODE`` strings."""
    return [f"{host}:{v['bind']}:{v.get('mode', 'rw')}" for host, v in volumes.items()]


def service_spec(command: list[str], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The Compose service keys for what :meth:`ContainerSandbox._run` would pass to ``containers.run``."""
    spec: dict[str, Any] = {"command": list(command)}
    keys = {"user": "user", "working_dir": "working_dir", "environment": "environment",
            "stop_signal": "stop_signal", "mem_limit": "mem_limit", "memswap_limit": "memswap_limit"}
    for key, compose_key in keys.items():
        if kwargs.get(key) is not None:
            spec[compose_key] = kwargs[key]
    if kwargs.get("volumes"):
        spec["volumes"] = _volume_specs(kwargs["volumes"])
    unknown = set(kwargs) - set(keys) - {"volumes"}
    if unknown:
        raise ComposeError(f"no Compose key for {', '.join(sorted(unknown))}")
    return spec


class ComposeSandbox(ContainerSandbox):
    """The three services as Compose project ``project`` on the engine at ``docker_url``."""

    def __init__(self, docker_url: str, state_dir: Path, *args: Any, project: str = PROJECT, **kwargs: Any) -> None:
        kwargs.pop("names", None)
        super().__init__(docker_url, state_dir, *args, names=SERVICES, **kwargs)
        self.project = project
        self.project_dir = self.state_dir / "compose"

    @classmethod
    def load(cls, state_dir: Path) -> "ComposeSandbox":
        st = json.loads((Path(state_dir) / STATE_FILE).read_text())
        c = st["containers"]
        return cls(c["docker_url"], state_dir, st["api"]["port"], st["postgres"]["port"], st["redis"]["port"],
                   project=c.get("project", PROJECT), max_connections=st["postgres"]["max_connections"],
                   pool_size=st["api"]["pool_size"], reserved_connections=st["postgres"]["reserved_connections"],
                   token=st["token"])

    # -- the Compose CLI --------------------------------------------------------------------------
    @property
    def compose_project(self) -> ComposeProject:
        return ComposeProject(self.project, (str(COMPOSE_FILE), str(self.project_dir / HOST_FILE)),
                              str(self.project_dir))

    def compose(self, *args: str, timeout: float = 180) -> str:
        """Run ``docker-compose`` for the project (``DOCKER_HOST`` = the sandbox's engine); its output."""
        cli = compose_cli()
        if cli is None:
            raise ComposeError(f"{CLI} is not installed (apt-get install docker-compose)")
        argv = self.compose_project.argv(cli, *args)
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                              env={**os.environ, "DOCKER_HOST": self.docker_url}, cwd=self.project_dir)
        if proc.returncode != 0:
            raise ComposeError(f"{' '.join(argv)} exited {proc.returncode}: {(proc.stdout + proc.stderr).strip()[-800:]}")
        return proc.stdout + proc.stderr

    def _specs(self) -> dict[str, Any]:
        try:
            return json.loads((self.project_dir / HOST_FILE).read_text())["services"]
        except (OSError, ValueError, KeyError):
            return {}

    def _write_spec(self, service: str, spec: dict[str, Any]) -> None:
        """Record ``service``'s host part (JSON is YAML; Compose reads it)."""
        specs = self._specs()
        specs[service] = spec
        self.project_dir.mkdir(parents=True, exist_ok=True)
        (self.project_dir / HOST_FILE).write_text(json.dumps({"version": "2.4", "services": specs}, indent=2) + "\n")

    # -- containers, by Compose's labels ------------------------------------------------------------
    def replicas(self, role: str) -> list:
        """Every container of the role's service, replica 1 first."""
        found = self.client.containers.list(all=True, filters={"label": [f"{PROJECT_LABEL}={self.project}",
                                                                         f"{SERVICE_LABEL}={self.names[role]}"]})
        return sorted(found, key=lambda c: replica_number(c.labels))

    def _container(self, role: str):
        """Replica 1 of the role's service (None when Compose has not created it)."""
        found = self.replicas(role)
        return found[0] if found else None

    def _run(self, role: str, command: list[str], **kwargs: Any):
        """``docker-compose up -d --no-deps SERVICE`` with the role's host part (see the module docstring)."""
        build_base_image(self.client, BASE_IMAGE)
        derive_image(self.client, API_IMAGE, base=BASE_IMAGE, replace=False,
                     labels={"org.opencontainers.image.version": "1"})
        service = self.names[role]
        self._write_spec(service, service_spec(command, kwargs))
        self.compose("up", "-d", "--no-deps", service)
        return self._container(role)

    def _remove(self, role: str, timeout: int = 10) -> None:
        if (self.project_dir / HOST_FILE).exists():
            self.compose("rm", "--stop", "--force", self.names[role])

    def crash_api(self) -> dict[str, Any]:
        """Every replica of the backend killed with SIGQUIT (exit 131): the service crashed. Not
        SIGKILL: with the backend's memory limit, exit 137 reads as an OOM kill (see api-oom). The
        backend's init (``init: true``) passes the signal on; PID 1 itself would ignore it."""
        running = [c for c in self.replicas("api") if c.status == "running"]
        if not running:
            raise RuntimeError(f"api-crash: no replica of service {self.names['api']} is running")
        for ctr in running:
            ctr.kill(signal="SIGQUIT")
        codes = {ctr.name: ctr.wait(timeout=30).get("StatusCode") for ctr in running}
        return {"killed": sorted(codes), "signal": "SIGQUIT", "exit_codes": codes}

    # -- deploys -------------------------------------------------------------------------------------
    def deploy_api(self, image: str) -> dict[str, Any]:
        """A Compose deploy: ``SMARTAMAZON_API_IMAGE=image`` in the project's ``.env``, then ``up -d``
        (an earlier rollback's pin file is dropped: the deploy says what runs now)."""
        from smartops_nb.platforms.docker import normalize_ref

        ctr = self._container("api")
        before = normalize_ref((ctr.attrs.get("Config") or {}).get("Image") or "") if ctr is not None else None
        env = self.project_dir / ".env"
        env.write_text(f"{IMAGE_ENV}={image}\n")
        (self.project_dir / ROLLBACK_FILE).unlink(missing_ok=True)
        try:
            self.compose("up", "-d", "--no-deps", self.names["api"])
            error = ""
        except ComposeError as e:
            error = str(e)[-300:]
        ctr = self._container("api")
        return {"image_before": before, "image_after": normalize_ref(image),
                "status": ctr.status if ctr is not None else "missing", "error": error}

    def redeploy_api(self, good: str) -> dict[str, Any]:
        """Back to the project's own files on ``good``, whatever a rollback pinned."""
        done = self.deploy_api(good)
        self._wait_healthy(60)
        return {"redeployed": True, **done}

    # -- state, lifecycle ------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        st = super().state()
        st["mode"] = "compose"
        st["containers"]["project"] = self.project
        st["containers"]["project_dir"] = str(self.project_dir)
        return st

    def params(self) -> dict[str, Any]:
        return {**Sandbox.params(self), "platform": "compose", "docker_host": self.docker_url,
                "compose_project": self.project, "api_service": self.names["api"],
                "db_service": self.names["postgres"], "redis_service": self.names["redis"]}

    def down(self) -> None:
        """``docker-compose down`` (the data dir stays for the next ``up()``)."""
        self._down_host_faults()
        if (self.project_dir / HOST_FILE).exists():
            try:
                self.compose("down", "--timeout", "20")
            except Exception:  # the engine is gone: nothing left to stop
                pass
        super().down()

    def ps(self) -> str:
        """``docker-compose ps``, as a person would read it."""
        return self.compose("ps")
