"""Where the SmartAmazon workloads run: one small interface, three drivers (Docker, Docker Compose,
Kubernetes).

A runbook asks :func:`connect` for the platform named by its ``platform`` parameter and then only
uses the :class:`~smartops_nb.platforms.base.Platform` methods; it never branches on the platform.
Drivers are imported lazily so that a runbook on Docker never imports the Kubernetes client.
"""
from __future__ import annotations

from .base import ImageRevision, Platform, PlatformError, Release, WorkloadState

__all__ = ["Platform", "PlatformError", "WorkloadState", "ImageRevision", "Release", "connect", "workload"]


def connect(params) -> Platform:
    """Return the driver for ``params.platform`` (``docker``, ``compose`` or ``kubernetes``).

    Creating a driver does no network I/O; the first call that needs the engine or the API server
    raises :class:`PlatformError` with the reason when it is unreachable.
    """
    if params.platform == "docker":
        from .docker import DockerPlatform

        return DockerPlatform(base_url=params.docker_host or None)
    if params.platform == "compose":
        from .compose import ComposePlatform

        return ComposePlatform(params.compose_project, base_url=params.docker_host or None)
    if params.platform == "kubernetes":
        from .kubernetes import KubernetesPlatform

        return KubernetesPlatform(context=params.kube_context or None, namespace=params.kube_namespace)
    raise PlatformError(f"unknown platform {params.platform!r} (expected 'docker', 'compose' or 'kubernetes')")


def workload(params, component: str = "api") -> str:
    """The name of ``component``'s workload on ``params.platform``: the ``<component>_container``
    parameter on docker, ``<component>_service`` on compose, ``<component>_deployment`` on
    kubernetes (``workload(params, "api")``).

    The one place that maps a component to a platform's workload name, so runbooks never branch
    on the platform themselves.
    """
    kind = {"kubernetes": "deployment", "compose": "service"}.get(params.platform, "container")
    name = f"{component}_{kind}"
    if name not in params:
        raise PlatformError(f"no parameter {name!r}: cannot name the {component} workload on {params.platform}")
    return getattr(params, name)
