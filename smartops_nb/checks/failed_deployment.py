"""Who decides ``crash-on-start``, ``image-unavailable`` and ``health-check-failing``: these checks.

Pure functions: data from the deployment, workload and HTTP probes in, :class:`Finding` or
:class:`Diagnosis` out. The state dicts are :class:`WorkloadState` dicts from either platform;
the evidence is read the same way whichever produced it.
"""
from __future__ import annotations

from enum import StrEnum

import re
from typing import Any

import pandas as pd

from smartops_nb.findings import Diagnosis, Finding, by_check, reads
from .common import check_health, check_logs, measured, state_table, time_or_none  # noqa: F401


class Step(StrEnum):
    """The step ids of this runbook's notebook cells (``run.step(Step.X, ...)``), read by the checks below."""

    IMAGES = "images"
    WORKLOAD = "workload-state"
    ROLLOUT = "rollout"
    HEALTH = "health"
    LOGS = "logs"
    ENVIRONMENT = "environment"


# Kubernetes waiting reasons for an image the node cannot get
PULL_REASONS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
# what an engine says when the image (tag) does not exist (podman, Docker, registries)
MISSING_IMAGE = re.compile(r"image not known|no such image|manifest unknown|not found|pull access denied|"
                           r"repository does not exist|ErrImagePull|ImagePullBackOff", re.I)
CRASH_REASONS = {"CrashLoopBackOff", "Error", "exited", "RunContainerError", "OOMKilled"}


# ------------------------------------------------------------------------------ images

def check_images(history: pd.DataFrame, target: dict[str, Any] | None) -> Finding:
    """The running image and the rollback target (the platform's own rule, see
    :meth:`~smartops_nb.platforms.base.Platform.rollback_target`; None when there is none)."""
    if not len(history):
        return Finding("error", "the platform returned no image history for the workload", {"revisions": []})
    current = history[history["current"].astype(bool)]
    cur = current.iloc[0] if len(current) else history.iloc[0]
    data = {"current_image": cur["image"], "current_revision": str(cur["revision"]),
            "previous_image": (target or {}).get("image") or None,
            "previous_revision": (target or {}).get("revision"),
            "revisions": history.astype(str).to_dict("records")}
    if data["previous_image"] is None:
        return Finding("warn", f"running {cur['image']}; no earlier image is known, so there is nothing to roll "
                               f"back to", data)
    return Finding("ok", f"deployed {cur['image']} (revision {cur['revision']}); previous image "
                         f"{data['previous_image']}", data)


# ------------------------------------------------------------------------------ state

def ran_for_seconds(state: dict[str, Any]) -> float | None:
    """How long the last run lasted, when the platform says when it started and finished."""
    st = (state.get("detail") or {}).get("state") or {}
    started, finished = time_or_none(st.get("StartedAt")), time_or_none(st.get("FinishedAt"))
    if started is None or finished is None:
        return None
    return max((finished - started).total_seconds(), 0.0)  # podman may stamp FinishedAt a hair early


def image_unavailable(state: dict[str, Any]) -> str:
    """Why the workload's image cannot be had ("" when it can): a pull reason or the engine's error."""
    if state.get("status") in PULL_REASONS:
        pods = (state.get("detail") or {}).get("pods") or []
        message = next((p.get("message") for p in pods if p.get("message")), "")
        return f"{state['status']}{': ' + message if message else ''}"
    error = state.get("deploy_error") or ""
    if error and MISSING_IMAGE.search(error):
        return f"the deploy could not create the container: {error}"
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
                                      "started_at", "deploy_error")}
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

@reads(Step.IMAGES, Step.WORKLOAD, Step.HEALTH)
def diagnose(findings: list, params) -> Diagnosis:
    """crash-on-start and image-unavailable from the state; health-check-failing when the workload
    runs but /health is not 200."""
    f = by_check(findings)
    state, health = f.get(Step.WORKLOAD), f.get(Step.HEALTH)
    causes, why = [], []
    if state and state.data.get("image_unavailable"):
        causes.append("image-unavailable")
        why.append(state.summary)
    if state and state.data.get("crash_on_start"):
        causes.append("crash-on-start")
        why.append(state.summary)
    if health and health.status == "critical" and state and state.data.get("running"):
        causes.append("health-check-failing")
        why.append(f"the workload runs but {health.summary}")
    if not causes:
        unknown = (" /health is failing but the workload's state is unknown, so the deploy is not confirmed as "
                   "the cause." if health and health.status == "critical" and (not state or state.status == "error")
                   else "")
        return Diagnosis([], "Failed deployment not confirmed: " + measured(f, (Step.WORKLOAD, Step.HEALTH)) + unknown)
    images = f.get(Step.IMAGES)
    target = images.data.get("previous_image") if images else None
    advice = (f" Recommended: rollback to {target}." if target else
              " No previous image is known: redeploy a known-good version by hand.")
    return Diagnosis(causes, "Failed deployment. " + " ".join(why) + advice)
