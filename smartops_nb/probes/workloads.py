"""Read a component's workload (``api``, ``db``...) on whatever platform the run is given.

The component → workload name mapping is :func:`smartops_nb.platforms.workload`'s; this module only
turns the platform's answers into plain data. Nothing here writes.
"""
from __future__ import annotations

from typing import Any, Callable

from smartops_nb import platforms, redact
from smartops_nb.platforms import PlatformError


def state(params, platform_factory: Callable[[], Any], component: str = "api") -> dict[str, Any]:
    """The component's :class:`WorkloadState` as a dict (raises PlatformError when unreachable)."""
    return platform_factory().state(platforms.workload(params, component)).to_dict()


def name(params, component: str) -> str:
    """The component's workload name, or "" when the platform names no such workload (no
    ``<component>_deployment`` parameter on kubernetes, say)."""
    try:
        return platforms.workload(params, component)
    except PlatformError:
        return ""


def optional_state(params, platform_factory: Callable[[], Any], component: str) -> dict[str, Any] | None:
    """Like :func:`state`, for a component the platform may not run (the database on kubernetes):
    ``None`` when the platform names no such workload, ``{"name", "error"}`` when it cannot be read."""
    try:
        name = platforms.workload(params, component)
    except PlatformError:  # no <component>_<kind> parameter: not a workload of this platform
        return None
    try:
        return platform_factory().state(name).to_dict()
    except PlatformError as e:
        return {"name": name, "error": redact.scrub(str(e))}


def logs(params, platform_factory: Callable[[], Any], component: str = "api", lines: int = 100) -> list[str]:
    """The last ``lines`` log lines of the component's workload, secrets scrubbed."""
    name = platforms.workload(params, component)
    return [redact.scrub(line) for line in platform_factory().logs(name, tail=lines)]
