"""Mitigations carried out through the platform interface: restart and scale a component's workload.

Each executed action returns before/after evidence: the workload's state and, when a health URL is
given, the API's ``/health`` answer (after waiting, bounded, for the workload to come back).
"""
from __future__ import annotations

from typing import Any, Callable

from smartops_nb import platforms
from smartops_nb.actions import Action
from smartops_nb.platforms import PlatformError
from .evidence import SETTLE_S, evidence as _evidence, settled as _settled


def _target(params, platform_factory: Callable[[], Any], component: str) -> tuple[str, str]:
    """(workload name or "", manual reason): a component this platform does not run, or a platform
    that cannot act from here (no Compose CLI), makes the action manual."""
    try:
        workload = platforms.workload(params, component)
    except PlatformError:
        return "", (f"the {component} is not a workload of platform {params.platform} here; "
                    f"restart it where it runs (managed service, StatefulSet) and re-check /health")
    return workload, platform_factory().cannot_act()


def restart(params, platform_factory: Callable[[], Any], component: str, name: str, *,
            health_url: str = "", wait_s: float = SETTLE_S) -> Action:
    """``docker restart`` / ``kubectl rollout restart`` of ``component``'s workload (action ``name``)."""
    workload, manual = _target(params, platform_factory, component)

    def preview() -> dict:
        return {"workload": workload, **_evidence(platform_factory(), workload, health_url)}

    def execute() -> dict:
        platform = platform_factory()
        before = _evidence(platform, workload, health_url)
        done = platform.restart(workload)
        return {"workload": workload, "before": before, "result": done,
                "after": _settled(platform, workload, health_url, wait_s)}

    return Action(name=name, target=f"{params.platform} {workload or component}",
                  description=f"restart the {component} workload (docker restart / kubectl rollout restart)",
                  execute=execute, preview=None if manual else preview, manual=manual)


def scale(params, platform_factory: Callable[[], Any], component: str, name: str, replicas: int, *,
          health_url: str = "", wait_s: float = SETTLE_S) -> Action:
    """``docker compose --scale`` / ``kubectl scale`` of ``component``'s workload to ``replicas``."""
    workload, manual = _target(params, platform_factory, component)

    def preview() -> dict:
        return {"workload": workload, "replicas": replicas, **_evidence(platform_factory(), workload, health_url)}

    def execute() -> dict:
        platform = platform_factory()
        before = _evidence(platform, workload, health_url)
        done = platform.scale(workload, int(replicas))
        return {"workload": workload, "before": before, "result": done,
                "after": _settled(platform, workload, health_url, wait_s)}

    return Action(name=name, target=f"{params.platform} {workload or component} → {replicas} replicas",
                  description=f"scale the {component} workload horizontally to {replicas} replicas",
                  execute=execute, preview=None if manual else preview, manual=manual)
