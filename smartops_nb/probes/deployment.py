"""Read what a deploy left behind: what it meant to run (the release), image history, the
workload's state (with the engine's own health check), its logs and environment.

Built on :mod:`smartops_nb.probes.workloads` (component -> workload on the run's platform). Nothing
here writes. The environment comes back with secret values masked, and those values are
registered for scrubbing, so a crash that prints its password is scrubbed from the logs too.
"""
from __future__ import annotations

from typing import Any, Callable

import pandas as pd

from smartops_nb import platforms, redact
from . import workloads

HISTORY_COLUMNS = ["revision", "image", "created_at", "current", "exists"]


def image_history(params, platform_factory: Callable[[], Any], component: str = "api") -> pd.DataFrame:
    """Deployed versions of the workload, newest first (``docker inspect | grep Image``, ReplicaSets)."""
    name = platforms.workload(params, component)
    rows = [vars(r) for r in platform_factory().image_history(name)]
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)


def rollback_target(params, platform_factory: Callable[[], Any], component: str = "api") -> dict[str, Any] | None:
    """What a rollback would go back to now (the platform's own rule), None when nothing."""
    target = platform_factory().rollback_target(platforms.workload(params, component))
    return None if target is None else vars(target)


def release(params, platform_factory: Callable[[], Any], component: str = "api") -> dict[str, Any]:
    """What the last deploy meant the workload to run (:meth:`Platform.release`: the Compose
    file's ``image:``, the pod template, or ``release_image`` on plain Docker), whether the
    engine has it and the engine's error, scrubbed."""
    done = platform_factory().release(platforms.workload(params, component), intended=params.release_image,
                                      window_s=params.deploy_window_s).to_dict()
    done["error"] = redact.scrub(done["error"])
    return done


def state(params, platform_factory: Callable[[], Any], component: str = "api") -> dict[str, Any]:
    """The workload's state (``docker inspect``/pods); the engine's last health probe output is
    scrubbed (a probe may print a connection string)."""
    st = workloads.state(params, platform_factory, component)
    health = (st.get("detail") or {}).get("health")
    if health and health.get("last_output"):
        health["last_output"] = redact.scrub(health["last_output"])
    return st


def environment(params, platform_factory: Callable[[], Any], component: str = "api") -> dict[str, str]:
    """``docker inspect | grep -A 20 Env``, with secret values masked (see :func:`redact.mask_env`)."""
    name = platforms.workload(params, component)
    return redact.mask_env(platform_factory().environment(name))


def logs(params, platform_factory: Callable[[], Any], component: str = "api", lines: int = 200) -> list[str]:
    """The last ``lines`` log lines, scrubbed of secrets, the workload's secret env values included."""
    try:
        environment(params, platform_factory, component)  # registers its secret values for scrub()
    except platforms.PlatformError:
        pass  # the logs may still be readable; URL credentials are scrubbed regardless
    return workloads.logs(params, platform_factory, component, lines)
