"""The Docker driver: the runbook's ``docker ...`` / ``docker-compose ...`` steps through the
``docker`` SDK, against Docker Engine or podman's Docker-compatible API service.

* Creating a :class:`DockerPlatform` does no I/O; the first call connects (``timeout`` seconds
  per HTTP call) and an unreachable engine raises :class:`PlatformError` with a one-line reason.
* Out-of-memory: podman leaves ``State.OOMKilled`` false for a container killed by the memory
  cgroup, so :meth:`DockerPlatform.state` also flags exit code 137 (SIGKILL) together with a
  memory limit as a *likely* OOM kill (``detail["oom_inferred"]``) and keeps the raw facts.
* Image history: a container labelled ``com.smartamazon.previous-image=<image>`` names its
  previous image; otherwise the other tags of the image's repository, newest first, are the
  earlier versions. Each says whether the engine still has it (a pruned previous image is not a
  rollback target). :meth:`rollback` recreates the container on the newest that exists.
* Release: plain Docker keeps no record of what a deploy meant to run, so :meth:`release` takes
  the intended image from the caller and reads the engine's events for what happened to the
  container: removed and not created again within the window is a recreate that failed.
* Health: the engine's own HEALTHCHECK result (``State.Health``: status, failing streak, the last
  probe's exit code and output) is in ``state().detail["health"]``.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from typing import Any, Iterator

try:  # the SDK (absolute import: the top-level ``docker`` package, not this module)
    import docker as _docker_sdk
    import docker.errors as _docker_errors
except ImportError:  # pragma: no cover - docker is a declared dependency
    _docker_sdk = None
    _docker_errors = None

from .base import ImageRevision, Platform, PlatformError, Release, WorkloadState

PREVIOUS_IMAGE_LABEL = "com.smartamazon.previous-image"
ROLLED_BACK_FROM_LABEL = "com.smartamazon.rolled-back-from"
REPLICA_OF_LABEL = "com.smartamazon.replica-of"
MAX_EVENTS = 20000   # container events read at most for one release()
EVENTS_SLACK_S = 3   # how long past "now" the engine may take to send the window's events
EVENTS_TIMEOUT_S = 20  # the whole events read at most: an engine that stops sending is a finding, not a hang
# engine event actions that end a container (Docker: destroy; podman: remove, and its own cleanup)
_GONE_ACTIONS = {"destroy", "remove", "cleanup"}
# environment entries an engine adds by itself (podman), not part of the workload's config
_ENGINE_ENV = {"container=podman", "container=docker"}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[-1] if text else ""
    if hasattr(exc, "explanation") and getattr(exc, "explanation", None):
        msg = str(exc.explanation).strip().splitlines()[-1]
    return f"{type(exc).__name__}: {msg}"[:300]


def normalize_ref(ref: str) -> str:
    """``docker.io/library/x:1`` and ``localhost/x:1`` -> ``x:1``; ``x`` -> ``x:latest``."""
    if not ref:
        return ref
    if ref.startswith("sha256:"):
        return ref
    for prefix in ("docker.io/library/", "docker.io/", "localhost/"):
        if ref.startswith(prefix):
            ref = ref[len(prefix):]
            break
    if "@" in ref:
        return ref
    name, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return ref + ":latest"
    return ref


def repository_of(ref: str) -> str:
    ref = normalize_ref(ref)
    if "@" in ref:
        return ref.split("@", 1)[0]
    return ref.rpartition(":")[0] or ref


class DockerPlatform(Platform):
    """A Docker-API engine. Workloads are containers, named as in ``docker ps``."""

    name = "docker"

    def __init__(self, base_url: str | None = None, timeout: int = 5, *, stop_timeout: int = 10) -> None:
        if base_url and base_url.startswith("unix://~"):   # e.g. unix://~/run/podman.sock
            base_url = "unix://" + os.path.expanduser(base_url[len("unix://"):])
        self.base_url = base_url
        self.timeout = timeout
        self.stop_timeout = stop_timeout
        self._client_obj = None

    # ------------------------------------------------------------------ connection, errors

    @property
    def client(self):
        """The connected ``docker.DockerClient`` (connects on first use)."""
        if self._client_obj is None:
            where = self.base_url or "DOCKER_HOST/default socket"
            if _docker_sdk is None:
                raise PlatformError("the docker SDK is not installed (pip install docker)")
            try:
                if self.base_url:
                    client = _docker_sdk.DockerClient(base_url=self.base_url, timeout=self.timeout)
                else:
                    client = _docker_sdk.from_env(timeout=self.timeout)
                client.ping()
            except Exception as exc:
                raise PlatformError(f"docker engine at {where} unreachable: {_one_line(exc)}") from None
            self._client_obj = client
        return self._client_obj

    def close(self) -> None:
        if self._client_obj is not None:
            with contextlib.suppress(Exception):
                self._client_obj.close()
            self._client_obj = None

    @contextlib.contextmanager
    def _call(self, what: str) -> Iterator[None]:
        try:
            yield
        except PlatformError:
            raise
        except Exception as exc:
            raise PlatformError(f"{what} failed: {_one_line(exc)}") from None

    def _get(self, container: str):
        """The container, or None when there is none by that name."""
        client = self.client
        with self._call(f"inspect {container}"):
            try:
                return client.containers.get(container)
            except _docker_errors.NotFound:
                return None

    def _require(self, container: str):
        ctr = self._get(container)
        if ctr is None:
            raise PlatformError(f"no container named {container!r}")
        return ctr

    # ------------------------------------------------------------------ read

    def state(self, workload: str) -> WorkloadState:
        ctr = self._get(workload)
        if ctr is None:
            return WorkloadState(name=workload, exists=False, status="missing")
        attrs = ctr.attrs
        st = attrs.get("State") or {}
        host = attrs.get("HostConfig") or {}
        running = bool(st.get("Running"))
        exit_code = None if running else st.get("ExitCode")
        limit = host.get("Memory") or None
        detail: dict[str, Any] = {
            "id": attrs.get("Id", "")[:12],
            "image_id": attrs.get("Image"),
            "state": {k: st.get(k) for k in ("Status", "Running", "Restarting", "Paused", "OOMKilled",
                                             "Dead", "ExitCode", "Error", "StartedAt", "FinishedAt")},
            "restart_policy": host.get("RestartPolicy"),
            "memory_limit_config": host.get("Memory"),
            "labels": (attrs.get("Config") or {}).get("Labels") or {},
        }
        health = engine_health(st.get("Health") or st.get("Healthcheck"))
        if health:
            detail["health"] = health
        usage = None
        if running:
            try:
                stats = self.client.api.stats(ctr.id, stream=False)
                mem = stats.get("memory_stats") or {}
                raw = mem.get("usage")
                inner = mem.get("stats") or {}
                cache = inner.get("total_inactive_file", inner.get("inactive_file", 0)) or 0
                if raw is not None:
                    usage = max(int(raw) - int(cache), 0)
                detail["memory_stats"] = {"usage": raw, "limit": mem.get("limit"), "inactive_file": cache}
                if limit is None and mem.get("limit"):
                    detail["memory_limit_effective"] = mem.get("limit")
            except Exception as exc:  # stats are a bonus; the inspect facts stand
                detail["stats_error"] = _one_line(exc)
        oom = bool(st.get("OOMKilled"))
        if not oom and exit_code == 137 and limit:
            oom = True
            detail["oom_inferred"] = True
            detail["oom_reason"] = (f"exit code 137 (SIGKILL) with a memory limit of {limit} bytes; "
                                    "likely killed for memory (the engine's OOMKilled flag is false)")
        return WorkloadState(
            name=workload,
            exists=True,
            running=running,
            status=st.get("Status") or ctr.status,
            restarts=int(attrs.get("RestartCount") or 0),
            exit_code=exit_code,
            oom_killed=oom,
            memory_usage_bytes=usage,
            memory_limit_bytes=limit,
            image=normalize_ref((attrs.get("Config") or {}).get("Image") or ""),
            started_at=st.get("StartedAt") or None,
            detail=detail,
        )

    def logs(self, workload: str, tail: int = 100) -> list[str]:
        ctr = self._require(workload)
        with self._call(f"logs {workload}"):
            raw = ctr.logs(stdout=True, stderr=True, tail=tail)
        return raw.decode("utf-8", "replace").splitlines()

    def environment(self, workload: str) -> dict[str, str]:
        ctr = self._require(workload)
        env: dict[str, str] = {}
        for item in (ctr.attrs.get("Config") or {}).get("Env") or []:
            key, _, value = item.partition("=")
            env[key] = value
        return env

    def _image_info(self, ref: str) -> tuple[str | None, str | None]:
        """(id, created) of an image, or (None, None) when it is not there."""
        try:
            img = self.client.images.get(ref)
        except _docker_errors.NotFound:
            return None, None
        return img.id, img.attrs.get("Created")

    def image_history(self, workload: str) -> list[ImageRevision]:
        ctr = self._require(workload)
        with self._call(f"image history of {workload}"):
            config = ctr.attrs.get("Config") or {}
            current_ref = normalize_ref(config.get("Image") or "")
            current_id = ctr.attrs.get("Image")
            if current_id and not str(current_id).startswith("sha256:"):
                current_id = "sha256:" + current_id
            found, current_created = self._image_info(current_id or current_ref)
            out = [ImageRevision(revision=current_ref.rpartition(":")[2] or current_ref,
                                 image=current_ref, created_at=_created(current_created), current=True,
                                 exists=found is not None)]
            seen = {current_ref}
            labels = config.get("Labels") or {}
            prev = labels.get(PREVIOUS_IMAGE_LABEL)
            if prev and normalize_ref(prev) not in seen:
                ref = normalize_ref(prev)
                found, created = self._image_info(ref)
                out.append(ImageRevision(revision=ref.rpartition(":")[2], image=ref,
                                         created_at=_created(created), exists=found is not None))
                seen.add(ref)
            repo = repository_of(current_ref)
            others = []
            for img in self.client.images.list(name=repo):
                if img.id == current_id:
                    continue  # another tag of the very same image: not an earlier version
                for tag in img.tags:
                    ref = normalize_ref(tag)
                    if repository_of(ref) == repo and ref not in seen:
                        others.append((img.attrs.get("Created"), ref))
                        seen.add(ref)
            others.sort(key=lambda t: _sort_key(t[0]), reverse=True)
            out += [ImageRevision(revision=ref.rpartition(":")[2], image=ref, created_at=_created(c), exists=True)
                    for c, ref in others]
        return out

    def repository_images(self, ref: str) -> list[str]:
        """The engine's tags of ``ref``'s repository (``docker images REPO``), sorted."""
        repo = repository_of(ref)
        with self._call(f"docker images {repo}"):
            return sorted({normalize_ref(t) for img in self.client.images.list(name=repo) for t in img.tags
                           if repository_of(t) == repo})

    def image_on_engine(self, ref: str) -> tuple[bool, str]:
        """(whether the engine has image ``ref``, the engine's own error when it does not)."""
        client = self.client
        try:
            client.images.get(ref)
        except _docker_errors.NotFound as exc:
            return False, _one_line(exc)
        except Exception as exc:
            raise PlatformError(f"docker image inspect {ref} failed: {_one_line(exc)}") from None
        return True, ""

    def _released(self, image: str, source: str, detail: dict[str, Any], error: str = "") -> Release:
        """A :class:`Release` of ``image`` with the engine's view of it (has it, its repository's tags)."""
        if not image:
            return Release(source=source, error=error, detail=detail)
        image = normalize_ref(image)
        available, missing = self.image_on_engine(image)
        return Release(image=image, source=source, available=available, engine_images=self.repository_images(image),
                       error=error or missing, detail=detail)

    def container_events(self, name: str, window_s: float) -> list[dict[str, Any]]:
        """The engine's events of containers named ``name`` over the last ``window_s`` seconds,
        oldest first: ``{"time", "action", "image"}`` (``docker events --filter container=NAME``)."""
        now = time.time()
        since = now - max(float(window_s), 0.0)
        out = []
        with self._call(f"docker events for {name}"):
            # ``until`` ends the stream (the SDK sets no read timeout on it); podman ends it when its
            # clock passes ``until`` even if it is still reading its event log, which on a busy
            # engine drops the newest events: hence the slack
            events = self.client.events(since=int(since), until=int(now) + EVENTS_SLACK_S, decode=True,
                                        filters={"type": "container", "container": name})
            # the SDK's stream has no read timeout; its close() shuts the socket down, which wakes a read
            # blocked in another thread: the watchdog bounds the whole read
            watchdog = threading.Timer(EVENTS_TIMEOUT_S, events.close)
            watchdog.daemon = True
            watchdog.start()
            try:
                for ev in itertools.islice(events, MAX_EVENTS):   # a busy engine's hour stays bounded
                    attrs = (ev.get("Actor") or {}).get("Attributes") or {}
                    if attrs.get("name") != name:
                        continue
                    out.append({"time": _created(ev.get("time")), "action": ev.get("Action") or ev.get("status"),
                                "image": normalize_ref(attrs.get("image") or ev.get("from") or "")})
            finally:
                watchdog.cancel()
                events.close()
        return out

    def release(self, workload: str, intended: str = "", window_s: float = 3600.0) -> Release:
        """``intended`` (plain Docker keeps no record of a deploy's image), else the container's
        configured image; ``detail["recreate_failed"]`` when the engine's events show the
        container removed within ``window_s`` and no container of that name since."""
        ctr = self._get(workload)
        detail: dict[str, Any] = {"container": workload, "container_exists": ctr is not None}
        configured = normalize_ref((ctr.attrs.get("Config") or {}).get("Image") or "") if ctr is not None else ""
        if ctr is None:
            events = self.container_events(workload, window_s)
            gone = [e for e in events if e["action"] in _GONE_ACTIONS]
            detail["events"] = events[-20:]
            if gone:
                detail.update(recreate_failed=True, removed_at=gone[-1]["time"], image_before=gone[-1]["image"])
        if intended:
            source = "the release_image parameter (plain Docker keeps no record of the deploy's image)"
        else:
            source = "the container's configured image" if ctr is not None else "no record: the container is gone"
        error = ((ctr.attrs.get("State") or {}).get("Error") or "") if ctr is not None else ""
        return self._released(intended or configured, source, detail, error=str(error)[:300])

    # ------------------------------------------------------------------ write

    def restart(self, workload: str) -> dict[str, Any]:
        ctr = self._require(workload)
        before = ctr.status
        t0 = time.monotonic()
        with self._call(f"restart {workload}"):
            ctr.restart(timeout=self.stop_timeout)
            ctr.reload()
        return {"action": "restart", "workload": workload, "platform": self.name,
                "status_before": before, "status_after": ctr.status,
                "running": ctr.status == "running", "seconds": round(time.monotonic() - t0, 2)}

    def scale(self, workload: str, replicas: int) -> dict[str, Any]:
        """Compose-style: ``workload`` is replica 1, ``workload-2`` .. ``workload-N`` the others,
        created from the same configuration and started; replicas above N are removed."""
        if replicas < 1:
            raise PlatformError(f"scale {workload}: replicas must be >= 1 (got {replicas})")
        base = self._require(workload)
        created, started, removed = [], [], []
        with self._call(f"scale {workload}"):
            for i in range(2, replicas + 1):
                name = f"{workload}-{i}"
                existing = self._get(name)
                if existing is not None:
                    if existing.status != "running":
                        existing.start()
                        started.append(name)
                    continue
                kwargs = self._recreate_kwargs(base, image=None)
                kwargs["labels"] = {**(kwargs.get("labels") or {}), REPLICA_OF_LABEL: workload}
                ctr = self._create(name, kwargs)
                ctr.start()
                created.append(name)
            i = replicas + 1
            while True:
                name = f"{workload}-{i}"
                extra = self._get(name)
                if extra is None:
                    break
                extra.remove(force=True)
                removed.append(name)
                i += 1
        return {"action": "scale", "workload": workload, "platform": self.name, "replicas": replicas,
                "created": created, "started": started, "removed": removed}

    def _rollback_plan(self, workload: str) -> tuple[Any, str, ImageRevision | None]:
        """(container, current image, target): the first earlier image that is not the one a previous
        rollback came from (rolling back twice must not return to the broken version)."""
        return rollback_plan(self._require(workload), self.image_history(workload))

    def rollback_target(self, workload: str) -> ImageRevision | None:
        return self._rollback_plan(workload)[2]

    def rollback(self, workload: str) -> dict[str, Any]:
        ctr, current, revision = self._rollback_plan(workload)
        target = revision.image if revision else None
        if target is None:
            raise PlatformError(f"rollback {workload}: no previous image known for {current} "
                                f"(no {PREVIOUS_IMAGE_LABEL} label and no other tag of its repository)")
        with self._call(f"rollback {workload}: image {target}"):
            self.client.images.get(target)  # fail before touching anything when it is gone
        kwargs = self._recreate_kwargs(ctr, image=target)
        new_labels = dict(kwargs.get("labels") or {})
        new_labels.pop(PREVIOUS_IMAGE_LABEL, None)
        new_labels[ROLLED_BACK_FROM_LABEL] = current
        kwargs["labels"] = new_labels
        old_id = ctr.id
        aside = f"{workload}-rollback-{int(time.time())}"
        with self._call(f"rollback {workload}: set aside the old container"):
            if ctr.status in ("running", "restarting", "paused"):
                ctr.stop(timeout=self.stop_timeout)
            ctr.rename(aside)
        try:
            with self._call(f"rollback {workload}: create on {target}"):
                new = self._create(workload, kwargs)
                new.start()
                new.reload()
        except PlatformError:
            # put the old one back as it was
            with contextlib.suppress(Exception):
                leftover = self._get(workload)
                if leftover is not None:
                    leftover.remove(force=True)
            with contextlib.suppress(Exception):
                ctr.rename(workload)
                ctr.start()
            raise
        with contextlib.suppress(Exception):
            ctr.remove(force=True)
        return {"action": "rollback", "workload": workload, "platform": self.name,
                "image_before": current, "image_after": target,
                "container_before": old_id[:12], "container_after": new.id[:12],
                "status_after": new.status, "running": new.status == "running"}

    # ------------------------------------------------------------------ engine-wide

    def disk_usage(self) -> dict[str, Any]:
        client = self.client
        with self._call("docker system df"):
            df = client.df()
        images = df.get("Images") or []
        containers = df.get("Containers") or []
        volumes = df.get("Volumes") or []
        cache = df.get("BuildCache") or []

        def n(v: Any) -> int:
            return int(v) if isinstance(v, (int, float)) and v > 0 else 0

        img_size = n(df.get("LayersSize")) or sum(n(i.get("Size")) for i in images)
        out = {
            "images": {"count": len(images), "size_bytes": img_size,
                       "reclaimable_bytes": sum(n(i.get("Size")) for i in images
                                                if not n(i.get("Containers")))},
            "containers": {"count": len(containers),
                           "size_bytes": sum(n(c.get("SizeRw")) for c in containers),
                           "reclaimable_bytes": sum(n(c.get("SizeRw")) for c in containers
                                                    if c.get("State") != "running")},
            "volumes": {"count": len(volumes),
                        "size_bytes": sum(n((v.get("UsageData") or {}).get("Size")) for v in volumes),
                        "reclaimable_bytes": sum(n((v.get("UsageData") or {}).get("Size")) for v in volumes
                                                 if not n((v.get("UsageData") or {}).get("RefCount")))},
            "build_cache": {"count": len(cache), "size_bytes": sum(n(b.get("Size")) for b in cache),
                            "reclaimable_bytes": sum(n(b.get("Size")) for b in cache
                                                     if not b.get("InUse") and not b.get("Shared"))},
        }
        out["total_bytes"] = sum(v["size_bytes"] for v in out.values() if isinstance(v, dict))
        out["reclaimable_bytes"] = sum(v["reclaimable_bytes"] for v in out.values() if isinstance(v, dict))
        out["root_dir"] = self._root_dir()
        return out

    def _root_dir(self) -> str | None:
        """Where the engine keeps images and containers (``docker info``'s DockerRootDir; podman
        answers with its graphroot); None when the engine does not say, or is not on this host (a
        ``tcp://``/``ssh://`` engine's path names a folder of another machine)."""
        url = self.base_url or os.environ.get("DOCKER_HOST", "")
        if url and not url.startswith(("unix://", "npipe://")):
            return None
        try:
            with self._call("docker info"):
                return self.client.info().get("DockerRootDir") or None
        except PlatformError:
            return None

    def prune(self, volumes: bool = False) -> dict[str, Any]:
        """``docker system prune -a`` (``--volumes`` only when asked): stopped containers, then
        dangling and unused images. NOTE: unused images include rollback targets."""
        client = self.client
        reclaimed = {"containers": 0, "images": 0, "volumes": 0}
        deleted: dict[str, list[str]] = {"containers": [], "images": [], "volumes": []}
        with self._call("prune containers"):
            r = client.containers.prune() or {}
            reclaimed["containers"] = int(r.get("SpaceReclaimed") or 0)
            deleted["containers"] = list(r.get("ContainersDeleted") or [])
        with self._call("prune images"):
            r = client.images.prune(filters={"dangling": True}) or {}
            reclaimed["images"] = int(r.get("SpaceReclaimed") or 0)
            deleted["images"] = [d.get("Deleted") or d.get("Untagged") for d in (r.get("ImagesDeleted") or [])]
            # unused = no container (any state) uses it; podman's API refuses dangling=false
            used = {c.attrs.get("Image") for c in client.containers.list(all=True)}
            used |= {"sha256:" + u for u in used if u and not u.startswith("sha256:")}
            for img in client.images.list():
                if img.id in used:
                    continue
                size = int(img.attrs.get("Size") or 0)
                try:
                    client.images.remove(img.id, force=True)
                except _docker_errors.NotFound:
                    continue
                except _docker_errors.APIError:
                    continue  # e.g. a parent of another image
                reclaimed["images"] += size
                deleted["images"].append(img.id)
        if volumes:
            with self._call("prune volumes"):
                r = client.volumes.prune() or {}
                reclaimed["volumes"] = int(r.get("SpaceReclaimed") or 0)
                deleted["volumes"] = list(r.get("VolumesDeleted") or [])
        return {"action": "prune", "platform": self.name, "volumes": volumes,
                "reclaimed_bytes": sum(reclaimed.values()), "reclaimed": reclaimed, "deleted": deleted}

    # ------------------------------------------------------------------ helpers

    def _create(self, name: str, kwargs: dict[str, Any]):
        api = self.client.api
        host_config = api.create_host_config(**kwargs.pop("host_config"))
        resp = api.create_container(name=name, host_config=host_config, **kwargs)
        return self.client.containers.get(resp["Id"])

    def _recreate_kwargs(self, ctr, image: str | None) -> dict[str, Any]:
        """``create_container`` arguments reproducing ``ctr`` (on ``image`` when given).

        What the old image supplied (its CMD, ENTRYPOINT, ENV, LABELs, WORKDIR, USER) is left to
        the new image, so that a rollback runs the previous version's own command.
        """
        attrs = ctr.attrs
        config = attrs.get("Config") or {}
        host = attrs.get("HostConfig") or {}
        old_image = {}
        try:
            old_image = (self.client.images.get(attrs.get("Image")).attrs.get("Config") or {})
        except Exception:
            old_image = {}
        same_image = image is None
        target = image or config.get("Image")

        def from_container(key: str):
            value = config.get(key)
            if same_image:
                return value or None
            return None if value == old_image.get(key) else (value or None)

        env = [e for e in (config.get("Env") or []) if e not in _ENGINE_ENV
               and not e.startswith("HOSTNAME=")]
        if not same_image:
            image_env = set(old_image.get("Env") or [])
            env = [e for e in env if e not in image_env]
        labels = dict(config.get("Labels") or {})
        if not same_image:
            for k, v in (old_image.get("Labels") or {}).items():
                if labels.get(k) == v:
                    labels.pop(k)
        entrypoint = from_container("Entrypoint")
        command = from_container("Cmd")
        if not same_image and entrypoint is not None and command is None and config.get("Cmd"):
            command = config.get("Cmd")
        restart = host.get("RestartPolicy") or {}
        host_config: dict[str, Any] = {
            "binds": host.get("Binds") or None,
            "network_mode": host.get("NetworkMode") or None,
            "port_bindings": host.get("PortBindings") or None,
            "mem_limit": host.get("Memory") or None,
            "memswap_limit": host.get("MemorySwap") or None,
            "restart_policy": restart if restart.get("Name") else None,
            "extra_hosts": host.get("ExtraHosts") or None,
            "privileged": bool(host.get("Privileged")),
            "cap_add": host.get("CapAdd") or None,
            "tmpfs": host.get("Tmpfs") or None,
        }
        if not host_config["mem_limit"]:
            host_config.pop("memswap_limit")
        elif (host_config.get("memswap_limit") or 0) < 0:
            host_config["memswap_limit"] = -1
        host_config = {k: v for k, v in host_config.items() if v is not None}
        kwargs: dict[str, Any] = {
            "image": target,
            "command": command,
            "entrypoint": entrypoint,
            "environment": env or None,
            "labels": labels or None,
            "working_dir": from_container("WorkingDir"),
            "user": from_container("User"),
            "healthcheck": from_container("Healthcheck"),   # the container's own HEALTHCHECK goes along
            "tty": bool(config.get("Tty")),
            "stdin_open": bool(config.get("OpenStdin")),
            "host_config": host_config,
        }
        if host.get("NetworkMode") not in (None, "", "host", "none") and config.get("ExposedPorts"):
            kwargs["ports"] = [p.split("/")[0] for p in config["ExposedPorts"]]
        return kwargs


def rollback_plan(ctr, history: list[ImageRevision]) -> tuple[Any, str, ImageRevision | None]:
    """(container, current image, target) from a container and its image history, newest first:
    the rule :meth:`DockerPlatform.rollback_target` and the Compose driver share. An image the
    engine no longer has (pruned) is never the target: the newest earlier one it has is."""
    current = history[0].image
    labels = (ctr.attrs.get("Config") or {}).get("Labels") or {}
    skip = {current, normalize_ref(labels.get(ROLLED_BACK_FROM_LABEL, "") or "")}
    return ctr, current, next((r for r in history[1:] if r.image not in skip and r.exists is not False), None)


def engine_health(health: dict[str, Any] | None) -> dict[str, Any]:
    """The engine's HEALTHCHECK result (``State.Health``) as plain data: status, failing streak and
    the last probe's exit code, time and output ({} when the container has no health check)."""
    if not health or not health.get("Status"):
        return {}
    log = health.get("Log") or []
    last = log[-1] if log else {}
    return {"status": health.get("Status"), "failing_streak": int(health.get("FailingStreak") or 0),
            "last_exit_code": last.get("ExitCode"), "last_checked_at": last.get("End") or last.get("Start"),
            "last_output": str(last.get("Output") or "").strip()[-500:], "probes": len(log)}


def _created(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value))
    return str(value)


def _sort_key(value: Any) -> str:
    return _created(value) or ""
