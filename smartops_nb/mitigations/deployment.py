"""Deployment mitigations: roll the workload back to its previous image.

``kubectl rollout undo`` on Kubernetes, recreating the container on the previous image on Docker
(the seed's ``docker-compose down; up -d`` of the previous version): both are the platform's
:meth:`~smartops_nb.platforms.base.Platform.rollback`. The result holds the image and state before
and after, and whether the workload runs and /health answers 200 afterwards.
"""
from __future__ import annotations

from typing import Any, Callable

from .. import platforms
from ..actions import Action
from ..probes import http
from ..waiting import until


def _target(history) -> str | None:
    current = next((r.image for r in history if r.current), history[0].image if history else None)
    return next((r.image for r in history if r.image != current), None)


def _snapshot(platform, name: str) -> dict[str, Any]:
    st = platform.state(name)
    return {"image": st.image, "status": st.status, "running": st.running, "restarts": st.restarts,
            "replicas_ready": st.replicas_ready, "revision": st.detail.get("revision")}


def rollback(params, platform_factory: Callable[[], Any], *, wait_s: float = 30.0,
             health_timeout_s: float = 5.0, component: str = "api") -> Action:
    name = platforms.workload(params, component)

    def preview() -> dict:
        platform = platform_factory()
        history = platform.image_history(name)
        return {"current_image": next((r.image for r in history if r.current), None),
                "would_roll_back_to": _target(history), "state": _snapshot(platform, name)}

    def execute() -> dict:
        platform = platform_factory()
        before = _snapshot(platform, name)
        done = platform.rollback(name)
        until(lambda: platform.state(name).running, timeout=wait_s)
        health = until(lambda: (h := http.health(params.api_url, health_timeout_s))["ok"] and h, timeout=wait_s) \
            or http.health(params.api_url, health_timeout_s)
        after = _snapshot(platform, name)
        return {"rollback": done, "before": before, "after": after,
                "health_after": {k: health.get(k) for k in ("status", "latency_ms", "error")},
                "image_history_after": [{"revision": r.revision, "image": r.image, "current": r.current}
                                        for r in platform.image_history(name)]}

    return Action(
        name="rollback",
        target=f"{params.platform} workload {name}",
        description="roll back to the previous image (kubectl rollout undo / recreate on the previous image)",
        execute=execute, preview=preview,
    )
