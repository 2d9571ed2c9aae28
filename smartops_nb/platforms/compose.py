"""The Docker Compose driver: a workload is a *service* of one Compose project, every replica of it.

The seed runs SmartAmazon with Compose (``docker-compose restart backend``, ``up -d --scale
backend=3``). Acting beside Compose (creating ``NAME-2`` containers it does not know) leaves
``docker-compose ps`` and the next ``docker-compose up -d`` disagreeing with what the runbook did, so:

* **Reading** goes through the engine, by Compose's own labels (``com.docker.compose.project``,
  ``.service``, ``.container-number``; one-off ``run`` containers excluded): the per-container
  reads are :class:`~smartops_nb.platforms.docker.DockerPlatform`'s, folded over the replicas.
* **Acting** (restart, scale, rollback) runs the Compose CLI (``docker-compose``) with the project's
  own config files and folder, which Compose recorded in the labels
  (``com.docker.compose.project.config_files`` / ``.working_dir``), and ``DOCKER_HOST`` set to the
  engine. Without the CLI those actions are refused with that reason (:meth:`cannot_act`); this
  driver does not imitate Compose.
* **Rollback** pins the service to the previous image in an override file next to the project,
  ``docker-compose.smartops-rollback.yml``, and runs ``up -d`` with it: the containers Compose
  creates record that file among their config files, so later actions (and ``docker-compose -f
  ... -f docker-compose.smartops-rollback.yml up -d``) keep the rolled-back image, while a plain
  ``docker-compose up -d`` returns to what the project's own files say. Delete the file once the
  project's files name a good image again.
* **Release** (what the last deploy meant to run) is the service's ``image:`` in the project's
  files, resolved by ``docker-compose config`` (read-only: variables from the environment and
  the project's ``.env``, files merged), compared with the engine's images. A deploy whose image
  the engine cannot get leaves the old containers (Compose 1.x renames the one it was replacing
  and stops it) still labelled as the service's: they lead to the files.
* A project or service that does not exist is a :class:`PlatformError` naming what was looked
  for and what the engine has (the runbook records it as an ``error`` finding).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import ImageRevision, PlatformError, Release, WorkloadState
from .docker import ROLLED_BACK_FROM_LABEL, DockerPlatform, _created, normalize_ref, rollback_plan

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
NUMBER_LABEL = "com.docker.compose.container-number"
ONEOFF_LABEL = "com.docker.compose.oneoff"
CONFIG_FILES_LABEL = "com.docker.compose.project.config_files"
WORKING_DIR_LABEL = "com.docker.compose.project.working_dir"
ENV_FILE_LABEL = "com.docker.compose.project.environment_file"
ROLLBACK_FILE = "docker-compose.smartops-rollback.yml"
CLI = "docker-compose"
CLI_TIMEOUT_S = 180


@dataclass(frozen=True)
class ComposeProject:
    """How Compose was run for a project, as its containers' labels record it."""

    name: str
    config_files: tuple[str, ...]
    working_dir: str
    env_file: str = ""

    @classmethod
    def from_labels(cls, labels: dict[str, str]) -> "ComposeProject":
        """Read the labels Compose puts on every container; config files recorded relative to the
        project folder (Compose 1.x writes them as given on its command line) are made absolute."""
        name = labels.get(PROJECT_LABEL) or ""
        workdir = labels.get(WORKING_DIR_LABEL) or ""
        if not name or not workdir:
            raise PlatformError(f"container labels name no Compose project folder ({PROJECT_LABEL}, {WORKING_DIR_LABEL})")
        files = tuple(str(Path(workdir, f.strip())) for f in (labels.get(CONFIG_FILES_LABEL) or "").split(",")
                      if f.strip())
        return cls(name, files, workdir, labels.get(ENV_FILE_LABEL) or "")

    def argv(self, cli: str, *args: str, extra_files: tuple[str, ...] = ()) -> list[str]:
        """``docker-compose -p NAME -f FILE... --project-directory DIR ARGS``."""
        files = [*self.config_files, *(f for f in extra_files if f not in self.config_files)]
        out = [cli, "-p", self.name]
        for f in files:
            out += ["-f", f]
        out += ["--project-directory", self.working_dir]
        if self.env_file:
            out += ["--env-file", self.env_file]
        return out + list(args)


def replica_number(labels: dict[str, str]) -> int:
    """The replica's ``com.docker.compose.container-number`` (0 when the label is missing or odd)."""
    try:
        return int(labels.get(NUMBER_LABEL) or 0)
    except ValueError:
        return 0


def compose_cli() -> str | None:
    """The path of the Compose CLI, or None."""
    return shutil.which(CLI)


class ComposePlatform(DockerPlatform):
    """The services of Compose project ``project`` on a Docker-API engine (``base_url``)."""

    name = "compose"

    def __init__(self, project: str, base_url: str | None = None, timeout: int = 5, *, stop_timeout: int = 10,
                 cli: str | None = None, cli_timeout: float = CLI_TIMEOUT_S) -> None:
        super().__init__(base_url, timeout, stop_timeout=stop_timeout)
        self.project = project
        self.cli = cli if cli is not None else compose_cli()
        self.cli_timeout = cli_timeout

    # ------------------------------------------------------------------ finding the replicas

    def _project_containers(self) -> list:
        with self._call(f"list the containers of Compose project {self.project!r}"):
            found = self.client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={self.project}"})
        return [c for c in found if (c.labels.get(ONEOFF_LABEL) or "False") != "True"]

    def replicas(self, service: str) -> list:
        """The service's containers (every state), replica 1 first; PlatformError when none."""
        if not self.project:
            raise PlatformError("no Compose project given (parameter compose_project)")
        mine = [c for c in self._project_containers() if c.labels.get(SERVICE_LABEL) == service]
        if not mine:
            raise PlatformError(self._not_found(service))
        return sorted(mine, key=lambda c: replica_number(c.labels))

    def _not_found(self, service: str) -> str:
        services = sorted({c.labels.get(SERVICE_LABEL, "?") for c in self._project_containers()})
        if services:
            return (f"Compose project {self.project!r} has no service {service!r} "
                    f"(its services: {', '.join(services)})")
        with self._call("list Compose projects"):
            projects = sorted({c.labels.get(PROJECT_LABEL) for c in
                               self.client.containers.list(all=True, filters={"label": PROJECT_LABEL})} - {None})
        where = self.base_url or "the engine"
        return (f"no Compose project {self.project!r} on {where} (looking for its service {service!r}; "
                f"projects there: {', '.join(projects) or 'none'})")

    # ------------------------------------------------------------------ read

    def state(self, workload: str) -> WorkloadState:
        """The service as one workload: running when every replica runs; the figures (status, exit
        code, memory, OOM) of the replica in the worst shape, each replica's in ``detail``."""
        ctrs = self.replicas(workload)
        states = [DockerPlatform.state(self, c.name) for c in ctrs]
        down = [s for s in states if not s.running]

        def pressure(s: WorkloadState) -> float:
            return (s.memory_usage_bytes or 0) / (s.memory_limit_bytes or float("inf"))

        worst = (next((s for s in down if s.oom_killed), down[0]) if down
                 else max(states, key=pressure))
        detail = dict(worst.detail)
        detail.update({
            "project": self.project, "service": workload, "replica": worst.name,
            "replicas": [{"name": s.name, "number": replica_number(c.labels), "status": s.status,
                          "running": s.running, "exit_code": s.exit_code, "oom_killed": s.oom_killed,
                          "restarts": s.restarts, "image": s.image,
                          "memory_usage_bytes": s.memory_usage_bytes} for c, s in zip(ctrs, states)],
        })
        return WorkloadState(
            name=workload, exists=True, running=not down, status=worst.status,
            restarts=sum(s.restarts for s in states), exit_code=worst.exit_code,
            oom_killed=any(s.oom_killed for s in states),
            memory_usage_bytes=worst.memory_usage_bytes, memory_limit_bytes=worst.memory_limit_bytes,
            image=states[0].image, started_at=worst.started_at,
            replicas_desired=len(states), replicas_ready=len(states) - len(down), detail=detail,
        )

    def logs(self, workload: str, tail: int = 100) -> list[str]:
        """Every replica's last ``tail`` lines, prefixed ``NAME | `` as ``docker-compose logs`` does
        when the service has more than one replica."""
        ctrs = self.replicas(workload)
        out: list[str] = []
        for c in ctrs:
            lines = DockerPlatform.logs(self, c.name, tail)
            out += [f"{c.name} | {line}" for line in lines] if len(ctrs) > 1 else lines
        return out

    def environment(self, workload: str) -> dict[str, str]:
        return DockerPlatform.environment(self, self.replicas(workload)[0].name)

    def image_history(self, workload: str) -> list[ImageRevision]:
        """Replica 1's history, headed by the image the project's files name when that differs (a
        deploy whose ``up`` failed): the deploy made it current, so what the replicas still run is
        the earlier version a rollback pins."""
        first = self.replicas(workload)[0]
        history = DockerPlatform.image_history(self, first.name)
        try:
            intended = normalize_ref(self._configured_image(ComposeProject.from_labels(first.labels), workload))
        except PlatformError:   # the files cannot be read here: what the replicas run is all there is
            return history
        if intended == history[0].image:
            return history
        found, created = self._image_info(intended)
        for r in history:
            r.current = False
        return [ImageRevision(revision=intended.rpartition(":")[2], image=intended, created_at=_created(created),
                              current=True, exists=found is not None),
                *(r for r in history if r.image != intended)]

    def _rollback_plan(self, workload: str) -> tuple[Any, str, ImageRevision | None]:
        """The Docker driver's rule, read from replica 1 (:meth:`rollback_target` uses it too)."""
        return rollback_plan(self.replicas(workload)[0], self.image_history(workload))

    # ------------------------------------------------------------------ act, through the Compose CLI

    def cannot_act(self) -> str:
        if not self.cli:
            return (f"the Compose CLI ({CLI}) is not installed here: restart, scale and rollback of a "
                    f"Compose service must go through it so that `{CLI} ps` and the next `{CLI} up -d` "
                    f"agree (apt-get install docker-compose)")
        return ""

    def _compose(self, ctr, what: str, *args: str, extra_files: tuple[str, ...] = ()) -> dict[str, Any]:
        """Run the Compose CLI for the project ``ctr`` belongs to; PlatformError with its last line."""
        project = ComposeProject.from_labels(ctr.labels)
        t0 = time.monotonic()
        proc = self._compose_run(project, what, *args, extra_files=extra_files)
        return {"command": " ".join(project.argv(self.cli, *args, extra_files=extra_files)),
                "seconds": round(time.monotonic() - t0, 2),
                "output": (proc.stdout + proc.stderr).strip().splitlines()[-10:]}

    def _compose_run(self, project: ComposeProject, what: str, *args: str,
                     extra_files: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        """Run the Compose CLI with ``args`` on ``project``; PlatformError (one line) when it is
        missing, the project's files are not here, or it fails."""
        refusal = self.cannot_act()
        if refusal:
            raise PlatformError(f"{what} refused: {refusal}")
        missing = [f for f in project.config_files if not Path(f).is_file()]
        if missing:  # e.g. a runbook run on another machine than the one Compose ran on
            raise PlatformError(f"{what} refused: the project's config files are not on this machine "
                                f"({', '.join(missing)}); act where the project lives")
        argv = project.argv(self.cli, *args, extra_files=extra_files)
        env = dict(os.environ)
        if self.base_url:
            env["DOCKER_HOST"] = self.base_url
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=project.working_dir,
                                  timeout=self.cli_timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise PlatformError(f"{what}: {CLI} did not finish within {self.cli_timeout:.0f}s") from None
        except OSError as e:
            raise PlatformError(f"{what}: cannot run {CLI}: {e}") from None
        if proc.returncode != 0:
            output = (proc.stdout + proc.stderr).strip().splitlines()
            raise PlatformError(f"{what}: {CLI} exited {proc.returncode}: {output[-1] if output else ''}"[:400])
        return proc

    def release(self, workload: str, intended: str = "", window_s: float = 3600.0) -> Release:
        """The service's ``image:`` as ``docker-compose config`` resolves it from the files its
        containers' labels name (``intended`` only when those files cannot be read here)."""
        ctrs = self.replicas(workload)
        project = ComposeProject.from_labels(ctrs[0].labels)
        detail = {"service": workload, "config_files": list(project.config_files),
                  "working_dir": project.working_dir,
                  "replica_images": sorted({normalize_ref((c.attrs.get("Config") or {}).get("Image") or "")
                                            for c in ctrs})}
        source = f"{', '.join(project.config_files)}: services.{workload}.image (docker-compose config)"
        try:
            image = self._configured_image(project, workload)
        except PlatformError as e:
            detail["config_error"] = str(e)
            image, source = intended, ("the release_image parameter" if intended else
                                       f"none: the project's files cannot be read here ({e})")
        return self._released(image, source, detail)

    def _configured_image(self, project: ComposeProject, service: str) -> str:
        """``docker-compose config``'s ``services.SERVICE.image`` (what ``up`` would create)."""
        import yaml

        done = self._compose_run(project, f"read the Compose files of {project.name}", "config")
        try:
            services = (yaml.safe_load(done.stdout) or {}).get("services") or {}
        except yaml.YAMLError as e:
            raise PlatformError(f"docker-compose config printed no YAML: {e}") from None
        image = (services.get(service) or {}).get("image")
        if not image:
            raise PlatformError(f"the project's files give service {service!r} no image (it may be built)")
        return str(image)

    def _after(self, workload: str) -> dict[str, Any]:
        ctrs = self.replicas(workload)
        return {"replicas_after": [c.name for c in ctrs], "running": all(c.status == "running" for c in ctrs)}

    def restart(self, workload: str) -> dict[str, Any]:
        """``docker-compose restart SERVICE``: every replica, stopped ones included."""
        ctrs = self.replicas(workload)
        before = [c.status for c in ctrs]
        done = self._compose(ctrs[0], f"restart {workload}", "restart", "-t", str(self.stop_timeout), workload)
        return {"action": "restart", "workload": workload, "platform": self.name, "project": self.project,
                "status_before": before, **done, **self._after(workload)}

    def scale(self, workload: str, replicas: int) -> dict[str, Any]:
        """``docker-compose up -d --no-deps --no-recreate --scale SERVICE=N SERVICE``: Compose numbers,
        labels and configures the new replicas itself and starts stopped ones."""
        if replicas < 1:
            raise PlatformError(f"scale {workload}: replicas must be >= 1 (got {replicas})")
        ctrs = self.replicas(workload)
        before = [c.name for c in ctrs]
        done = self._compose(ctrs[0], f"scale {workload}", "up", "-d", "--no-deps", "--no-recreate",
                             "--scale", f"{workload}={int(replicas)}", workload)
        after = self._after(workload)
        return {"action": "scale", "workload": workload, "platform": self.name, "project": self.project,
                "replicas": replicas, "replicas_before": before, **done, **after,
                "created": [n for n in after["replicas_after"] if n not in before],
                "removed": [n for n in before if n not in after["replicas_after"]]}

    def rollback(self, workload: str) -> dict[str, Any]:
        """Pin the service to the previous image in :data:`ROLLBACK_FILE` and ``up -d`` with it,
        keeping the replica count (see the module docstring)."""
        ctrs = self.replicas(workload)
        first = ctrs[0]
        _, current, revision = self._rollback_plan(workload)
        if revision is None:
            raise PlatformError(f"rollback {workload}: no previous image known for {current} "
                                f"(no other tag of its repository)")
        with self._call(f"rollback {workload}: image {revision.image}"):
            self.client.images.get(revision.image)  # fail before touching anything when it is gone
        project = ComposeProject.from_labels(first.labels)
        override = Path(project.working_dir) / ROLLBACK_FILE
        pins = _read_pins(override)
        pins[workload] = {"image": revision.image, "labels": {ROLLED_BACK_FROM_LABEL: current}}
        try:  # JSON is YAML: Compose reads it, and no YAML writer is needed here
            override.write_text(json.dumps({"version": _file_version(project), "services": pins}, indent=2) + "\n")
        except OSError as e:
            raise PlatformError(f"rollback {workload}: cannot write {override}: {e}") from None
        done = self._compose(first, f"rollback {workload}", "up", "-d", "--no-deps",
                             "--scale", f"{workload}={len(ctrs)}", workload, extra_files=(str(override),))
        after = self.replicas(workload)
        return {"action": "rollback", "workload": workload, "platform": self.name, "project": self.project,
                "image_before": current, "image_after": revision.image, "override_file": str(override),
                "containers_before": [c.id[:12] for c in ctrs], "containers_after": [c.id[:12] for c in after],
                **done, "running": all(c.status == "running" for c in after)}


def _read_pins(path: Path) -> dict[str, Any]:
    """The services an earlier rollback pinned in ``path`` (kept when another service is rolled back)."""
    try:
        return dict(json.loads(path.read_text()).get("services") or {})
    except (OSError, ValueError, AttributeError):
        return {}


def _file_version(project: ComposeProject) -> str:
    """The override's ``version:``, the project's own (Compose refuses to merge 2.x and 3.x files)."""
    import yaml

    for f in project.config_files:
        try:
            data = yaml.safe_load(Path(f).read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and data.get("version"):
            return str(data["version"])
    return "2.4"


__all__ = ["ComposePlatform", "ComposeProject", "compose_cli", "replica_number"]
