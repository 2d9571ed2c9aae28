"""Who decides ``container-crashed``, ``out-of-memory`` and ``database-unreachable``: the api-down checks.

Pure functions: the HTTP probe's answer and the platform's workload state in, :class:`Finding` or
:class:`Diagnosis` out. A podman container killed by the memory cgroup keeps ``OOMKilled`` false;
the Docker driver already infers it from exit 137 + a memory limit (``oom_killed`` then true).
"""
from __future__ import annotations

from enum import StrEnum

from typing import Any

import pandas as pd

from smartops_nb.findings import Diagnosis, Finding, by_check, reads
from .common import MIB, check_health, check_logs, database_status, measured, mib, state_table  # noqa: F401


class Step(StrEnum):
    """The step ids of this runbook's notebook cells (``run.step(Step.X, ...)``), read by the checks below."""

    HEALTH = "health"
    WORKLOAD = "workload-state"
    LOGS = "api-logs"
    MEMORY = "memory"
    DATABASE = "database"


CRASH_STATUSES = {"exited", "dead", "CrashLoopBackOff", "Error", "OOMKilled", "missing", "NotFound",
                  "RunContainerError", "CreateContainerError", "NoPods"}


# -- workload state ------------------------------------------------------------------------------
def is_down(st: dict[str, Any]) -> bool:
    """Not running, exited non-zero, or crash-looping (whatever the platform's word for it)."""
    return (not st.get("exists") or not st.get("running") or st.get("status") in CRASH_STATUSES
            or (st.get("exit_code") not in (None, 0)))


def check_workload(st: dict[str, Any]) -> Finding:
    down, restarts = is_down(st), int(st.get("restarts") or 0)
    data = {**st, "down": down}
    where = f"{st['name']} is {st.get('status') or 'unknown'}"
    if not st.get("exists"):
        return Finding("critical", f"{st['name']} does not exist on the platform", data)
    if down:
        code = f", last exit code {st['exit_code']}" if st.get("exit_code") is not None else ""
        oom = " (killed for memory)" if st.get("oom_killed") else ""
        return Finding("critical", f"{where}{code}{oom}, {restarts} restarts", data)
    if restarts:
        return Finding("warn", f"{where} but has restarted {restarts} times", data)
    return Finding("ok", f"{where}, no restarts", data)


# -- logs ------------------------------------------------------------------------------------------
def log_table(lines: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"line": lines})


# -- memory ----------------------------------------------------------------------------------------
def memory(st: dict[str, Any]) -> dict[str, Any]:
    usage, limit = st.get("memory_usage_bytes"), st.get("memory_limit_bytes")
    pct = round(100.0 * usage / limit, 1) if usage is not None and limit else None
    return {"name": st["name"], "usage_bytes": usage, "limit_bytes": limit, "used_pct": pct,
            "oom_killed": bool(st.get("oom_killed")), "exit_code": st.get("exit_code"),
            "oom_inferred": bool((st.get("detail") or {}).get("oom_inferred")),
            "stats_error": (st.get("detail") or {}).get("stats_error")}


def check_memory(m: dict[str, Any], warn_pct: float) -> Finding:
    data = {**m, "warn_pct": warn_pct, "near_limit": bool(m["used_pct"] is not None and m["used_pct"] >= warn_pct)}
    limit = f"{m['limit_bytes'] / MIB:.0f} MiB" if m["limit_bytes"] else "no limit"
    if m["oom_killed"]:
        how = ("exit 137 (SIGKILL) with a memory limit: the engine's OOMKilled flag is false, but that is a "
               "memory-cgroup kill" if m["oom_inferred"] else "OOMKilled")
        return Finding("critical", f"{m['name']} was killed for memory ({how}; limit {limit})", data)
    if m["usage_bytes"] is None and m.get("stats_error"):
        return Finding("warn", f"{m['name']}: memory use unknown, the platform's stats failed "
                               f"({m['stats_error']}); limit {limit}", data)
    if m["usage_bytes"] is None:
        return Finding("ok", f"{m['name']}: no live memory figure (not running, or the platform reports none); "
                             f"limit {limit}", data)
    text = f"{m['name']} uses {m['usage_bytes'] / MIB:.0f} MiB of {limit}"
    if data["near_limit"]:
        return Finding("critical", f"{text} ({m['used_pct']:.0f}% ≥ {warn_pct:g}%): about to be killed for memory",
                       data)
    return Finding("ok", text + (f" ({m['used_pct']:.0f}%)" if m["used_pct"] is not None else ""), data)


# -- database reachability, from the API's side ----------------------------------------------------
def check_database(h: dict[str, Any], db_state: dict[str, Any] | None) -> Finding:
    said = database_status(h)
    db_down = bool(db_state and "error" not in db_state and db_state.get("exists") and is_down(db_state))
    data = {"api_answered": h.get("status") is not None, "api_says": said, "db_workload": db_state,
            "db_down": db_down, "api_says_down": said is not None and said != "ok"}
    if db_down:
        return Finding("critical", f"database workload {db_state['name']} is {db_state.get('status')} "
                                   f"(exit code {db_state.get('exit_code')})", data)
    if data["api_says_down"]:
        return Finding("critical", f"the API is up but cannot reach its database: {said}", data)
    if said == "ok":
        return Finding("ok", "the API reports its database reachable", data)
    why = ("the platform did not answer: " + db_state["error"]) if db_state and "error" in db_state else (
        "no database workload on this platform" if not db_state or not db_state.get("exists") else
        f"database workload {db_state['name']} is {db_state.get('status')}")
    return Finding("warn", f"database reachability unknown: the API did not report it ({why})", data)


# -- diagnosis ---------------------------------------------------------------------------------------
@reads(Step.HEALTH, Step.WORKLOAD, Step.MEMORY, Step.DATABASE)
def diagnose(findings: list[Finding], params) -> Diagnosis:
    f = by_check(findings)
    health, wl, mem, db = (f.get(k) for k in (Step.HEALTH, Step.WORKLOAD, Step.MEMORY, Step.DATABASE))
    causes, why = [], []
    oom = bool(mem and (mem.data.get("oom_killed") or mem.data.get("near_limit")))
    api_failing = bool(health and health.status == "critical")
    down = bool(wl and wl.data.get("down"))
    restarted = bool(wl and wl.data.get("restarts"))
    if oom:
        causes.append("out-of-memory")
        why.append(mem.summary)
    if (down or (restarted and api_failing)) and not (oom and mem.data.get("oom_killed")):
        causes.append("container-crashed")
        why.append(wl.summary)
    if db and db.status == "critical":
        causes.append("database-unreachable")
        why.append(db.summary)
    if not causes:
        return Diagnosis([], ("The API is failing but no cause was confirmed: " + health.summary + "."
                              if api_failing else "API down not confirmed: "
                              + measured(f, (Step.HEALTH, Step.WORKLOAD, Step.MEMORY, Step.DATABASE))))
    todo = {"container-crashed": "restart-api", "out-of-memory": "restart-api, then scale-api or raise the limit",
            "database-unreachable": "restart-database"}
    rec = "; ".join(f"{c} → {todo[c]}" for c in causes)
    return Diagnosis(causes, "API service down. " + " ".join(why) + f". Recommended: {rec}.")
