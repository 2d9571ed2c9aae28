"""A deploy on the Docker-API engine, as the tests and the sandbox do it: ``deploy(client, name, image)``.

A deploy recreates the container ``name`` on ``image`` with the same configuration (environment,
mounts, network, limits, labels; what the old image supplied is left to the new one) and records
the image it replaces in the ``com.smartamazon.previous-image`` label, which
:meth:`DockerPlatform.image_history` and :meth:`DockerPlatform.rollback` read.

It is the naive ``docker stop; docker rm; docker run`` deploy, so a bad version really breaks the
workload: an image that exits at start leaves an exited container; a tag the engine does not have
fails at create time (podman: ``...: image not known``, HTTP 404). The engine cannot create a
container from an image it does not have, so in that case the helper leaves what an orchestrator
that keeps the spec would show: a container ``name`` *created and never started* that names the
missing tag (``Config.Image``), carries the engine's error in ``com.smartamazon.deploy-error`` and
the replaced image in the previous-image label. To get such a container at all it is created from
the previous image's layers under a transient tag that is removed at once (so the tag really does
not exist afterwards); it is never started. A rollback recreates it on the previous image.
"""
from __future__ import annotations

from typing import Any

from smartops_nb.platforms.docker import (PREVIOUS_IMAGE_LABEL, ROLLED_BACK_FROM_LABEL, DockerPlatform, _one_line, normalize_ref, repository_of)
from smartops_nb.probes.deployment import DEPLOY_ERROR_LABEL

__all__ = ["deploy", "DEPLOY_ERROR_LABEL"]


def _image_missing(exc: BaseException) -> bool:
    import docker

    if isinstance(exc, (docker.errors.ImageNotFound, docker.errors.NotFound)):
        return True
    text = str(exc).lower()
    return "image not known" in text or "no such image" in text or "manifest unknown" in text


def deploy(client, name: str, image: str, stop_timeout: int = 2, **run_kwargs: Any) -> dict[str, Any]:
    """Deploy ``image`` as container ``name``; return what happened (never raises for a bad image).

    Without a container ``name`` yet, ``run_kwargs`` (as for ``containers.run``) create the first
    one. Returns ``{"image_before", "image_after", "status", "error"}``.
    """
    import docker

    try:
        old = client.containers.get(name)
    except docker.errors.NotFound:
        ctr = client.containers.run(image, name=name, detach=True, **run_kwargs)
        ctr.reload()
        return {"image_before": None, "image_after": normalize_ref(image), "status": ctr.status, "error": ""}
    platform = DockerPlatform.__new__(DockerPlatform)  # reuse its create-from-config code on this client
    DockerPlatform.__init__(platform, stop_timeout=stop_timeout)
    platform._client_obj = client
    previous = normalize_ref((old.attrs.get("Config") or {}).get("Image") or "")
    kwargs = platform._recreate_kwargs(old, image=image)
    labels = dict(kwargs.get("labels") or {})
    labels.pop(ROLLED_BACK_FROM_LABEL, None)
    labels.pop(DEPLOY_ERROR_LABEL, None)
    labels[PREVIOUS_IMAGE_LABEL] = previous
    kwargs["labels"] = labels
    if old.status in ("running", "restarting", "paused"):
        old.stop(timeout=stop_timeout)
    old.remove(force=True)
    try:
        new = platform._create(name, dict(kwargs, host_config=dict(kwargs["host_config"])))
    except Exception as exc:
        if not _image_missing(exc):
            raise
        error = _one_line(exc)
        _leave_failed_deploy(client, platform, name, image, previous, kwargs, error)
        return {"image_before": previous, "image_after": normalize_ref(image), "status": "created",
                "error": error}
    new.start()
    new.reload()
    return {"image_before": previous, "image_after": normalize_ref(image), "status": new.status, "error": ""}


def _leave_failed_deploy(client, platform: DockerPlatform, name: str, image: str, previous: str,
                         kwargs: dict[str, Any], error: str) -> None:
    """A never-started container naming the missing ``image`` (see the module docstring)."""
    ref = normalize_ref(image)
    repo, _, tag = ref.rpartition(":")
    placeholder = client.images.get(previous)
    placeholder.tag(repo or repository_of(ref), tag or "latest")
    try:
        kwargs = dict(kwargs, host_config=dict(kwargs["host_config"]))
        kwargs["labels"] = {**kwargs["labels"], DEPLOY_ERROR_LABEL: error}
        platform._create(name, kwargs)
    finally:
        client.images.remove(ref)  # untag only: the previous image keeps its own tag
