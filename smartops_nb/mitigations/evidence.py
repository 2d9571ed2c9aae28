"""Before/after evidence of an action on a workload: its state and the API's /health, and the
bounded wait for it to settle. Shared by every mitigation that acts through the platform."""
from __future__ import annotations

from typing import Any

from smartops_nb.platforms import PlatformError
from smartops_nb.probes import http
from smartops_nb.waiting import until

SETTLE_S = 30.0  # how long an executed action waits for the workload (and /health) to come back
STATE_KEYS = ("image", "status", "running", "exit_code", "restarts", "replicas_desired", "replicas_ready")


def evidence(platform, name: str, health_url: str, health_timeout_s: float = 3.0) -> dict[str, Any]:
    """The workload's state (or the platform's error) and, with ``health_url``, the /health answer."""
    out: dict[str, Any] = {}
    try:
        st = platform.state(name)
        out["state"] = {k: getattr(st, k) for k in STATE_KEYS}
    except PlatformError as e:
        out["state"] = {"error": str(e)}
    if health_url:
        h = http.health(health_url, timeout=health_timeout_s)
        out["health"] = {k: h[k] for k in ("status", "latency_ms", "error")}
    return out


def settled(platform, name: str, health_url: str, wait_s: float, health_timeout_s: float = 3.0) -> dict[str, Any]:
    """Evidence once the workload runs and /health answers 200, or when ``wait_s`` is up."""
    return until(lambda: evidence(platform, name, health_url, health_timeout_s), wait_s,
                 done=lambda ev: ev["state"].get("running") and (not health_url or ev["health"]["status"] == 200))
