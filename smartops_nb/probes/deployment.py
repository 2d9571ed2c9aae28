"""Read what a deploy left behind: image history, the workload's state, its logs and environment.

Built on :mod:`smartops_nb.probes.workloads` (component -> workload on the run's platform). Nothing
here writes. The environment comes back with secret values masked, and those values are
registered for scrubbing, so a crash that prints its password is scrubbed from the logs too.
"""
from __future__ import annotations

from typing import Any, Callable

import pandas as pd

from smartops_nb import platforms, redact
from . import workloads

# Set by a deploy tool that could not create the container (a placeholder carries it): the
# engine's error, e.g. "no such image: ...: image not known".
DEPLOY_ERROR_LABEL = "com.smartamazon.deploy-error"
HISTORY_COLUMNS = ["revision", "image", "created_at", "current"]


def image_history(params, platform_factory: Callable[[], Any], component: str = "api") -> pd.DataFrame:
    """Deployed versions of the workload, newest first (``docker inspect | grep Image``, ReplicaSets)."""
    name = platforms.workload(params, component)
    rows = [vars(r) for r in platform_factory().image_history(name)]
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)


def rollback_target(params, platform_factory: Callable[[], Any], component: str = "api") -> dict[str, Any] | None:
    """What a rollback would go back to now (the platform's own rule), None when nothing."""
    target = platform_factory().rollback_target(platforms.workload(params, component))
    return None if target is None else vars(target)


def state(params, platform_factory: Callable[[], Any], component: str = "api") -> dict[str, Any]:
    """The workload's state (``docker inspect``/pods) plus ``deploy_error``: the engine's error of
    a deploy that could not create the container, when the platform recorded one."""
    st = workloads.state(params, platform_factory, component)
    labels = (st.get("detail") or {}).get("labels") or {}
    st["deploy_error"] = redact.scrub(labels.get(DEPLOY_ERROR_LABEL, ""))
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
