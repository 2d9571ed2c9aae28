"""Deployment mitigations: roll the workload back to its previous image.

``kubectl rollout undo`` on Kubernetes, recreating the container on the previous image on Docker
(the seed's ``docker-compose down; up -d`` of the previous version): both are the platform's
:meth:`~smartops_nb.platforms.base.Platform.rollback`, whose target the preview shows
(:meth:`~smartops_nb.platforms.base.Platform.rollback_target`, the same rule). The result holds the
image and state before and after, and whether the workload runs and /health answers 200 afterwards.
An earlier image the engine no longer has is never the target: the preview names it as gone and,
when no earlier image exists, says the rollback cannot run.
"""
from __future__ import annotations

from typing import Any, Callable

from smartops_nb import platforms
from smartops_nb.actions import Action
from smartops_nb.platforms import PlatformError
from .evidence import evidence, settled


def rollback(params, platform_factory: Callable[[], Any], *, wait_s: float = 30.0,
             health_timeout_s: float = 5.0, component: str = "api") -> Action:
    name = platforms.workload(params, component)

    def preview() -> dict:
        platform = platform_factory()
        target = platform.rollback_target(name)
        gone = [r.image for r in platform.image_history(name)[1:] if r.exists is False]
        now = evidence(platform, name, params.api_url, health_timeout_s)
        out = {"current_image": now["state"].get("image"), "would_roll_back_to": target.image if target else None,
               "gone_from_engine": gone, "state": now["state"], "health": now.get("health")}
        if target is None:
            out["cannot_run"] = (f"the previous image {', '.join(gone)} no longer exists in the engine" if gone
                                 else "no earlier image is known") + ": redeploy a known-good version by hand"
        return out

    def execute() -> dict:
        platform = platform_factory()
        before = evidence(platform, name, params.api_url, health_timeout_s)
        done = platform.rollback(name)
        after = settled(platform, name, params.api_url, wait_s, health_timeout_s)
        try:  # the rollback is done: failing to read the history must not record it as failed
            history = [{"revision": r.revision, "image": r.image, "current": r.current}
                       for r in platform.image_history(name)]
        except PlatformError as e:
            history = [{"error": str(e)}]
        return {"rollback": done, "before": before["state"], "after": after["state"],
                "health_before": before.get("health"), "health_after": after.get("health"),
                "image_history_after": history}

    return Action(
        name="rollback",
        target=f"{params.platform} workload {name}",
        description="roll back to the previous image (kubectl rollout undo / recreate on the previous image)",
        execute=execute, preview=preview, manual=platform_factory().cannot_act(),
    )
