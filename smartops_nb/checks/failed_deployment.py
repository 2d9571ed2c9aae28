"""Who decides ``crash-on-start``, ``image-unavailable`` and ``health-check-failing``: these checks.

Pure functions: data from the deployment, workload and HTTP probes in, :class:`Finding` or
:class:`Diagnosis` out. The state dicts are :class:`WorkloadState` dicts and the release dicts
:class:`Release` dicts from any platform; the evidence is read the same way whichever produced it:

* ``image-unavailable``: the image the deploy tool meant to run (the Compose file, the pod
  template, ``release_image`` on plain Docker) is not on the engine, or the pods wait with an
  image-pull reason.
* ``crash-on-start``: the workload runs the intended image and exited non-zero soon after start
  (or CrashLoopBackOff with restarts). Old containers a failed deploy stopped are not a crash.
* ``health-check-failing``: the workload runs, and /health answers non-200, or the engine's own
  health check reports ``unhealthy`` (its probe output cited).
"""
from __future__ import annotations

from enum import StrEnum

from typing import Any

import pandas as pd

from smartops_nb.findings import Diagnosis, Finding, by_check, reads
from .common import measured, time_or_none
from .common import check_health, check_logs, state_table  # noqa: F401 - the notebook's steps call them as fd.X


class Step(StrEnum):
    """The step ids of this runbook's notebook cells (``run.step(Step.X, ...)``), read by the checks below."""

    RELEASE = "release"
    IMAGES = "images"
    WORKLOAD = "workload-state"
    ROLLOUT = "rollout"
    ENGINE_HEALTH = "engine-health"
    HEALTH = "health"
    LOGS = "logs"
    ENVIRONMENT = "environment"


# Kubernetes waiting reasons for an image the node cannot get
PULL_REASONS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
CRASH_REASONS = {"CrashLoopBackOff", "Error", "exited", "RunContainerError", "OOMKilled"}


# ------------------------------------------------------------------------------ images

def gone_images(history: pd.DataFrame, target: dict[str, Any] | None) -> list[str]:
    """Earlier images newer than the rollback target that the engine no longer has (pruned)."""
    if "exists" not in history:
        return []
    earlier = history[~history["current"].astype(bool)]
    images = list(earlier["image"])
    stop = images.index(target["image"]) if target and target.get("image") in images else len(images)
    return [img for img, ex in zip(images[:stop], earlier["exists"][:stop]) if pd.notna(ex) and not bool(ex)]


def check_images(history: pd.DataFrame, target: dict[str, Any] | None) -> Finding:
    """The running image and the rollback target (the platform's own rule, see
    :meth:`~smartops_nb.platforms.base.Platform.rollback_target`; None when there is none). An
    earlier image the engine no longer has is named as gone, never offered."""
    if not len(history):
        return Finding("error", "the platform returned no image history for the workload", {"revisions": []})
    current = history[history["current"].astype(bool)]
    cur = current.iloc[0] if len(current) else history.iloc[0]
    gone = gone_images(history, target)
    data = {"current_image": cur["image"], "current_revision": str(cur["revision"]),
            "previous_image": (target or {}).get("image") or None,
            "previous_revision": (target or {}).get("revision"), "gone": gone,
            "revisions": history.astype(str).to_dict("records")}
    lost = (f"the previous image {gone[0]} no longer exists in the engine (removed or pruned)" if len(gone) == 1
            else f"the previous images {', '.join(gone)} no longer exist in the engine (removed or pruned)")
    if data["previous_image"] is None:
        if gone:
            return Finding("warn", f"running {cur['image']}; {lost}, and no earlier image exists: the rollback "
                                   f"cannot run", data)
        return Finding("warn", f"running {cur['image']}; no earlier image is known, so there is nothing to roll "
                               f"back to", data)
    if gone:
        return Finding("warn", f"deployed {cur['image']} (revision {cur['revision']}); {lost}; the newest earlier "
                               f"image that exists is {data['previous_image']}", data)
    return Finding("ok", f"deployed {cur['image']} (revision {cur['revision']}); previous image "
                         f"{data['previous_image']}", data)


# ------------------------------------------------------------------------------ release

def check_release(release: dict[str, Any]) -> Finding:
    """What the deploy meant to run against what the engine has: the intended image, where that
    was read, the engine's images of that repository and its error."""
    image, detail = release.get("image") or "", release.get("detail") or {}
    data = {**release, "image_unavailable": bool(image) and release.get("available") is False}
    failed = (f"container {detail.get('container')} (image {detail.get('image_before') or '?'}) was removed at "
              f"{detail.get('removed_at')} and none of that name was created since: a recreate that failed"
              if detail.get("recreate_failed") else "")
    if not image:
        if failed:
            return Finding("critical", f"{failed}; the platform keeps no record of the image the deploy meant "
                                       f"to run (give release_image)", data)
        return Finding("warn", f"no record of the image the deploy meant to run ({release.get('source')})", data)
    has = ", ".join(release.get("engine_images") or []) or "none"
    if data["image_unavailable"]:
        error = f": {release['error']}" if release.get("error") else ""
        return Finding("critical", f"the deploy meant to run {image} ({release.get('source')}); the engine cannot "
                                   f"get it{error}. Images of that repository on the engine: {has}"
                                   + (f". {failed[0].upper()}{failed[1:]}" if failed else ""), data)
    if failed:
        return Finding("critical", f"{failed}; the deploy's image {image} is on the engine", data)
    if release.get("available") is None:
        return Finding("ok", f"the deploy meant to run {image} ({release.get('source')}); whether it can be had is "
                             f"not known yet", data)
    return Finding("ok", f"the deploy's image {image} is on the engine ({release.get('source')})", data)


# ------------------------------------------------------------------------------ state

def ran_for_seconds(state: dict[str, Any]) -> float | None:
    """How long the last run lasted, when the platform says when it started and finished."""
    st = (state.get("detail") or {}).get("state") or {}
    started, finished = time_or_none(st.get("StartedAt")), time_or_none(st.get("FinishedAt"))
    if started is None or finished is None:
        return None
    return max((finished - started).total_seconds(), 0.0)  # podman may stamp FinishedAt a hair early


def image_unavailable(state: dict[str, Any]) -> str:
    """Why the workload's image cannot be had ("" when it can): its pods wait with a pull reason."""
    if state.get("status") in PULL_REASONS:
        pods = (state.get("detail") or {}).get("pods") or []
        message = next((p.get("message") for p in pods if p.get("message")), "")
        return f"{state['status']}{': ' + message if message else ''}"
    return ""


def crash_on_start(state: dict[str, Any], startup_window_s: float) -> str:
    """Why this looks like a crash at start ("" when it does not)."""
    if state.get("running") or not state.get("exists"):
        return ""
    code, status, restarts = state.get("exit_code"), state.get("status", ""), int(state.get("restarts") or 0)
    if status == "CrashLoopBackOff" or (restarts and code not in (None, 0)):
        return f"{status}: {restarts} restarts, last exit code {code}"
    ran = ran_for_seconds(state)
    if code not in (None, 0) and status in CRASH_REASONS and ran is not None and ran <= startup_window_s:
        return f"{status} with exit code {code} after {ran:.1f} s (within {startup_window_s:g} s of start)"
    return ""


def check_state(state: dict[str, Any], startup_window_s: float) -> Finding:
    """Container / pods after the deploy: running, crashed at start, or unable to get the image."""
    data = {k: state.get(k) for k in ("name", "exists", "running", "status", "image", "exit_code", "restarts",
                                      "started_at")}
    data["ran_for_s"] = ran_for_seconds(state)
    pulled = image_unavailable(state)
    crashed = crash_on_start(state, startup_window_s)
    data.update({"image_unavailable": bool(pulled), "crash_on_start": bool(crashed)})
    name, image = state.get("name"), state.get("image")
    if pulled:
        return Finding("critical", f"{name} cannot start: image {image} is unavailable ({pulled})", data)
    if crashed:
        return Finding("critical", f"{name} ({image}) crashes on start: {crashed}", data)
    if not state.get("exists"):
        return Finding("critical", f"no workload named {name} on the platform ({state.get('status')})", data)
    if not state.get("running"):
        return Finding("warn", f"{name} ({image}) is not running: {state.get('status')}, exit code "
                               f"{state.get('exit_code')}", data)
    return Finding("ok", f"{name} runs {image} ({state.get('status')}, {state.get('restarts') or 0} restarts)", data)


def check_rollout(state: dict[str, Any]) -> Finding:
    """``kubectl rollout status``: replicas desired and ready, and the revision."""
    detail = state.get("detail") or {}
    desired = state.get("replicas_desired")
    desired = (1 if state.get("exists") else 0) if desired is None else desired
    ready = state.get("replicas_ready")
    ready = (1 if state.get("running") else 0) if ready is None else ready
    data = {"desired": desired, "ready": ready, "updated": detail.get("updated_replicas"),
            "unavailable": detail.get("unavailable_replicas"), "revision": detail.get("revision"),
            "conditions": detail.get("conditions") or []}
    rev = f" (revision {data['revision']})" if data["revision"] else ""
    text = f"{ready} of {desired} replicas ready{rev}"
    if desired and ready < desired:
        return Finding("critical", f"rollout not complete: {text}", data)
    return Finding("ok", f"rollout complete: {text}", data)


# ------------------------------------------------------------------------------ health, logs, env

def check_engine_health(state: dict[str, Any]) -> Finding:
    """The engine's own HEALTHCHECK (``docker inspect``'s State.Health): status, failing streak and
    the last probe's output. It is there even when /health cannot be reached from here."""
    health = (state.get("detail") or {}).get("health") or {}
    data = {"name": state.get("name"), "running": state.get("running"), **health}
    status = health.get("status")
    if not status:
        return Finding("ok", f"{state.get('name')} has no health check the engine runs", data)
    probe = (f"; last probe exit code {health.get('last_exit_code')}: {health.get('last_output') or '(no output)'}"
             if health.get("probes") else "")
    text = f"the engine's health check of {state.get('name')} says {status}"
    if status == "unhealthy":
        return Finding("critical", f"{text}, failing {health.get('failing_streak')} times in a row{probe}", data)
    if status == "healthy":
        return Finding("ok", text + probe, data)
    return Finding("warn", f"{text} (no verdict yet){probe}", data)


def log_tail(lines: list[str], n: int = 30) -> pd.DataFrame:
    return pd.DataFrame({"line": lines[-n:]})


def env_table(env: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame(sorted(env.items()), columns=["name", "value"])


def check_environment(env: dict[str, str]) -> Finding:
    """The configured environment (values already masked): shown, and empty values flagged."""
    empty = sorted(k for k, v in env.items() if v == "")
    masked = sorted(k for k, v in env.items() if v == "******")
    data = {"variables": env, "masked": masked, "empty": empty}
    if empty:
        return Finding("warn", f"{len(env)} variables; empty: {', '.join(empty)}", data)
    return Finding("ok", f"{len(env)} variables ({len(masked)} secret values masked)", data)


# ------------------------------------------------------------------------------ diagnosis

def _health_failing(f: dict, running: bool) -> str:
    """Why the running workload fails its health check ("" when it does not): /health answering
    non-200, or the engine's own check unhealthy. /health not reachable from here while the
    engine's check passes is no evidence against the release."""
    health, engine = f.get(Step.HEALTH), f.get(Step.ENGINE_HEALTH)
    if not running:
        return ""
    verdict = engine.data.get("status") if engine and engine.status != "error" else None
    why = []
    if verdict == "unhealthy":
        why.append(engine.summary)
    if health and health.status == "critical" and (health.data.get("answered") or verdict != "healthy"):
        why.append(f"the workload runs but {health.summary}")
    return "; ".join(why)


def _rollback_advice(images: Finding | None) -> str:
    target = images.data.get("previous_image") if images else None
    gone = images.data.get("gone") if images else []
    if gone and not target:
        return (f" The rollback cannot run: the previous image {', '.join(gone)} no longer exists in the engine; "
                f"redeploy a known-good version by hand.")
    if gone:
        return (f" The previous image {', '.join(gone)} no longer exists in the engine; the newest earlier image "
                f"that does is {target}: recommended rollback to it.")
    if target:
        return f" Recommended: rollback to {target}."
    return " No previous image is known: redeploy a known-good version by hand."


@reads(Step.RELEASE, Step.IMAGES, Step.WORKLOAD, Step.ENGINE_HEALTH, Step.HEALTH)
def diagnose(findings: list, params) -> Diagnosis:
    """image-unavailable from the release (or pods waiting to pull), crash-on-start when the
    workload on the intended image crashed at start, health-check-failing when it runs but /health
    or the engine's own check fails. Each cause cites its evidence."""
    f = by_check(findings)
    release, state, health = f.get(Step.RELEASE), f.get(Step.WORKLOAD), f.get(Step.HEALTH)
    causes, why = [], []
    intended = release.data.get("image") if release and release.status != "error" else ""
    if release and release.data.get("image_unavailable"):
        causes.append("image-unavailable")
        why.append(release.summary)
    elif state and state.data.get("image_unavailable"):
        causes.append("image-unavailable")
        why.append(state.summary)
    if state and state.data.get("crash_on_start") and (not intended or state.data.get("image") == intended):
        causes.append("crash-on-start")
        why.append(state.summary)
    failing = _health_failing(f, bool(state and state.data.get("running")))
    if failing:
        causes.append("health-check-failing")
        why.append(failing)
    if not causes:
        unknown = (" /health is failing but the workload's state is unknown, so the deploy is not confirmed as "
                   "the cause." if health and health.status == "critical" and (not state or state.status == "error")
                   else "")
        return Diagnosis([], "Failed deployment not confirmed: "
                         + measured(f, (Step.RELEASE, Step.WORKLOAD, Step.ENGINE_HEALTH, Step.HEALTH)) + unknown)
    return Diagnosis(causes, "Failed deployment. " + " ".join(w.rstrip(".") + "." for w in why)
                     + _rollback_advice(f.get(Step.IMAGES)))
