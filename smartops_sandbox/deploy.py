"""A deploy on the Docker-API engine, as the tests and the sandbox do it: ``deploy(client, name, image)``.

A deploy recreates the container ``name`` on ``image`` with the same configuration (environment,
mounts, network, limits, labels; what the old image supplied is left to the new one) and records
the image it replaces in the ``com.smartamazon.previous-image`` label, which
:meth:`DockerPlatform.image_history` and :meth:`DockerPlatform.rollback` read.

It is the naive ``docker stop; docker rm; docker run`` deploy, so a bad version really breaks the
workload: an image that exits at start leaves an exited container; a tag the engine does not have
fails at create time (podman: ``...: image not known``, HTTP 404) and leaves *no* container of
that name, exactly as the shell script would. Nothing else records what was meant: the runbook
learns it from the engine's events (the container removed, none created since) and from the
image the caller names (``release_image``).
"""
from __future__ import annotations

from typing import Any

from smartops_nb.platforms.docker import PREVIOUS_IMAGE_LABEL, ROLLED_BACK_FROM_LABEL, DockerPlatform, _one_line, normalize_ref

__all__ = ["deploy"]


def _image_missing(exc: BaseException) -> bool:
    import docker

    if isinstance(exc, (docker.errors.ImageNotFound, docker.errors.NotFound)):
        return True
    text = str(exc).lower()
    return "image not known" in text or "no such image" in text or "manifest unknown" in text


def deploy(client, name: str, image: str, stop_timeout: int = 2, **run_kwargs: Any) -> dict[str, Any]:
    """Deploy ``image`` as container ``name``; return what happened (never raises for a bad image).

    Without a container ``name`` yet, ``run_kwargs`` (as for ``containers.run``) create the first
    one. Returns ``{"image_before", "image_after", "status", "error"}``; ``status`` is
    ``"missing"`` when the image could not be had (the old container is gone all the same).
    """
    import docker

    try:
        old = client.containers.get(name)
    except docker.errors.NotFound:
        ctr = client.containers.run(image, name=name, detach=True, **run_kwargs)
        ctr.reload()
        return {"image_before": None, "image_after": normalize_ref(image), "status": ctr.status, "error": ""}
    platform = DockerPlatform(stop_timeout=stop_timeout)
    platform._client_obj = client  # reuse its create-from-config code on this client
    previous = normalize_ref((old.attrs.get("Config") or {}).get("Image") or "")
    kwargs = platform._recreate_kwargs(old, image=image)
    labels = dict(kwargs.get("labels") or {})
    labels.pop(ROLLED_BACK_FROM_LABEL, None)
    labels[PREVIOUS_IMAGE_LABEL] = previous
    kwargs["labels"] = labels
    if old.status in ("running", "restarting", "paused"):
        old.stop(timeout=stop_timeout)
    old.remove(force=True)
    try:
        new = platform._create(name, kwargs)
    except Exception as exc:
        if not _image_missing(exc):
            raise
        return {"image_before": previous, "image_after": normalize_ref(image), "status": "missing",
                "error": _one_line(exc)}
    new.start()
    new.reload()
    return {"image_before": previous, "image_after": normalize_ref(image), "status": new.status, "error": ""}
