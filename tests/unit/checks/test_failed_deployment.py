"""checks/failed_deployment.diagnose as a table: evidence in, cause codes out, no services.

Every cause code, and the traps: a symptom present while its cause is not (old containers a
failed deploy stopped, /health unreachable while the engine's check passes, a pruned rollback
target, an unhealthy check of a container that is not running)."""
from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from smartops_nb.checks import failed_deployment as fd
from smartops_nb.findings import Finding
from tests.unit.checks import assert_diagnosis

GOOD, BAD = "api:1", "api:2"
T0 = "2026-12-04T10:00:00Z"


def state(image: str = BAD, running: bool = True, status: str = "running", exit_code: int | None = None,
          restarts: int = 0, ran_s: float | None = None, health: dict | None = None, exists: bool = True,
          pods: list | None = None) -> dict[str, Any]:
    detail: dict[str, Any] = {"state": {"StartedAt": T0,
                                        "FinishedAt": f"2026-12-04T10:00:{ran_s:02.0f}Z" if ran_s is not None else None}}
    if health:
        detail["health"] = health
    if pods:
        detail["pods"] = pods
    return {"name": "api", "exists": exists, "running": running, "status": status, "image": image,
            "exit_code": exit_code, "restarts": restarts, "started_at": T0, "detail": detail}


def release(image: str = BAD, available: bool | None = True, error: str = "", **detail: Any) -> dict[str, Any]:
    return {"image": image, "source": "docker-compose.yml: services.backend.image", "available": available,
            "engine_images": [GOOD], "error": error, "detail": detail}


def http(status: int | None = 200) -> dict[str, Any]:
    return {"url": "http://api/health", "status": status, "latency_ms": 3, "body": "",
            "error": None if status else "connection refused"}


def history(*rows: tuple[str, bool | None]) -> pd.DataFrame:
    return pd.DataFrame([{"revision": img.rpartition(":")[2], "image": img, "created_at": None,
                          "current": i == 0, "exists": ex} for i, (img, ex) in enumerate(rows)])


UNHEALTHY = {"status": "unhealthy", "failing_streak": 3, "last_exit_code": 1, "probes": 3,
             "last_output": "curl: (7) Failed to connect to localhost port 8000"}
HEALTHY = {"status": "healthy", "failing_streak": 0, "last_exit_code": 0, "probes": 2, "last_output": "ok"}
MISSING = "ImageNotFound: failed to find image api:2: image not known"
PULLING = [{"name": "api-7d9-x", "reason": "ImagePullBackOff", "message": 'Back-off pulling image "api:2"'}]


def findings(rel: dict | None, st: dict | None, h: dict | None, hist: pd.DataFrame | None = None,
             target: dict | None = None) -> list[Finding]:
    out = []
    for step, f in ((fd.Step.RELEASE, rel and fd.check_release(rel)),
                    (fd.Step.WORKLOAD, st and fd.check_state(st, startup_window_s=300)),
                    (fd.Step.ENGINE_HEALTH, st and fd.check_engine_health(st)),
                    (fd.Step.HEALTH, h and fd.check_health(h)),
                    (fd.Step.IMAGES, fd.check_images(hist if hist is not None else history((BAD, True), (GOOD, True)),
                                                     target if target is not None else {"revision": "1", "image": GOOD}))):
        if f is not None:
            f.check = str(step)
            out.append(f)
    return out


CASES = {
    # ---- each cause
    "healthy release": (release(), state(), http(200), [], ""),
    "compose tag that does not exist": (
        release(available=False, error=MISSING),
        state(image=GOOD, running=False, status="exited", exit_code=137, ran_s=20), http(None),
        ["image-unavailable"], "engine cannot get it: ImageNotFound"),
    "plain docker failed recreate, release_image named": (
        release(available=False, error=MISSING, recreate_failed=True, container="api", image_before=GOOD,
                removed_at=T0),
        state(exists=False, running=False, status="missing", image=""), http(None),
        ["image-unavailable"], "a recreate that failed"),
    "kubernetes pods waiting to pull": (
        release(available=False, error='ImagePullBackOff: Back-off pulling image "api:2"'),
        state(running=False, status="ImagePullBackOff", pods=PULLING), http(None),
        ["image-unavailable"], "ImagePullBackOff"),
    "kubernetes pull reason seen only in the state": (
        None, state(running=False, status="ErrImagePull", pods=PULLING), http(None),
        ["image-unavailable"], "ErrImagePull"),
    "crash at start of the intended image": (
        release(), state(running=False, status="exited", exit_code=1, ran_s=2), http(None),
        ["crash-on-start"], "crashes on start"),
    "crash loop": (
        release(), state(running=False, status="CrashLoopBackOff", exit_code=1, restarts=4), http(None),
        ["crash-on-start"], "4 restarts"),
    "/health answers 503": (release(), state(), http(503), ["health-check-failing"], "HTTP 503"),
    "engine check unhealthy, /health unreachable from here": (
        release(), state(health=UNHEALTHY), http(None), ["health-check-failing"], "Failed to connect"),
    "engine check unhealthy, /health 200": (
        release(), state(health=UNHEALTHY), http(200), ["health-check-failing"], "failing 3 times in a row"),
    # ---- traps: a symptom without its cause
    "old container stopped by a failed deploy is no crash": (
        release(available=False, error=MISSING),
        state(image=GOOD, running=False, status="exited", exit_code=143, ran_s=30), http(None),
        ["image-unavailable"], ""),
    "/health unreachable while the engine's check passes": (
        release(), state(health=HEALTHY), http(None), [], ""),
    "engine check starting": (release(), state(health={**UNHEALTHY, "status": "starting"}), http(200), [], ""),
    "unhealthy check of a container that is not running": (
        release(), state(running=False, status="exited", exit_code=0, ran_s=500, health=UNHEALTHY), http(None),
        [], ""),
    "intended image not known yet (no pods with it)": (release(available=None), state(), http(200), [], ""),
    "recreate failed but the image is there": (
        release(available=True, recreate_failed=True, container="api", image_before=GOOD, removed_at=T0),
        state(exists=False, running=False, status="missing", image=""), http(None), [], ""),
    "no record of the intended image": (release(image="", available=None), state(), http(200), [], ""),
    "exit 1 long after start is no crash at start": (
        release(), state(running=False, status="exited", exit_code=1, ran_s=None), http(None), [], ""),
    "/health down and the state unknown": (release(), None, http(None), [], "state is unknown"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_diagnose(case):
    rel, st, h, causes, says = CASES[case]
    assert_diagnosis(fd.diagnose, findings(rel, st, h), None, causes, says)


def test_both_image_and_health_evidence_are_cited_when_both_hold():
    d = fd.diagnose(findings(release(), state(health=UNHEALTHY), http(503)), None)
    assert d.causes == ["health-check-failing"]
    assert "HTTP 503" in d.summary and "Failed to connect" in d.summary


@pytest.mark.parametrize("hist,target,says,previous", [
    (history((BAD, True), (GOOD, True)), {"revision": "1", "image": GOOD}, "Recommended: rollback to api:1", GOOD),
    (history((BAD, True), (GOOD, False)), None, "The rollback cannot run: the previous image api:1 no longer exists",
     None),
    (history((BAD, True), (GOOD, False), ("api:0", True)), {"revision": "0", "image": "api:0"},
     "the newest earlier image that does is api:0", "api:0"),
    (history((BAD, True)), None, "No previous image is known", None),
])
def test_rollback_advice_never_offers_a_pruned_image(hist, target, says, previous):
    rel = release(available=False, error=MISSING)
    d = fd.diagnose(findings(rel, state(image=GOOD, running=False, status="exited", exit_code=0), http(None),
                             hist, target or {}), None)
    assert d.causes == ["image-unavailable"]
    assert says in d.summary
    images = fd.check_images(hist, target)
    assert images.data["previous_image"] == previous
    assert (GOOD in images.data["gone"]) == (says.startswith("The rollback") or "newest" in says)


def test_release_finding_names_the_evidence():
    f = fd.check_release(release(available=False, error=MISSING))
    assert f.status == "critical" and f.data["image_unavailable"]
    assert BAD in f.summary and MISSING in f.summary and "on the engine: api:1" in f.summary
    assert fd.check_release(release()).status == "ok"


def test_engine_health_finding():
    assert fd.check_engine_health(state()).status == "ok"   # no HEALTHCHECK: nothing to say against it
    f = fd.check_engine_health(state(health=UNHEALTHY))
    assert f.status == "critical" and "exit code 1: curl: (7)" in f.summary
