"""Who decides ``connections-near-limit`` and ``idle-connection-leak``: the db-pool checks.

Pure functions: data from the PostgreSQL probe in, :class:`Finding` or :class:`Diagnosis` out.
"""
from __future__ import annotations

from enum import StrEnum

import pandas as pd

from smartops_nb.findings import Diagnosis, Finding, by_check, reads
from .common import measured
from smartops_nb.probes.postgres import LoginAttempt


class Step(StrEnum):
    """The step ids of this runbook's notebook cells (``run.step(Step.X, ...)``), read by the checks below."""

    LOGIN = "login"
    USAGE = "connection-usage"
    BREAKDOWN = "connections-breakdown"
    IDLE = "idle-connections"
    POOL_ERRORS = "api-pool-errors"


POOL_ERROR = "connection pool exhausted"
#: Idle connections are a leak only when the server is this busy (share of max_connections in use).
LEAK_PRESSURE = 0.5


def check_login(attempt: LoginAttempt) -> Finding:
    data = {"dsn": attempt.dsn, "via": attempt.via, "attempts": attempt.attempts,
            "slots_exhausted": attempt.slots_exhausted}
    if attempt.slots_exhausted:
        how = ("logged in through postgres_admin_dsn (reserved slots)" if attempt.ok else
               "to get in, give postgres_admin_dsn: a role granted pg_use_reserved_connections, or a superuser")
        refused = next((a["error"] for a in attempt.attempts if a.get("slots_exhausted")), attempt.error)
        return Finding("critical", f"PostgreSQL refused the runbook's login for lack of connection slots "
                                   f"({refused}): the server is at its connection limit; {how}", data)
    if not attempt.ok:
        return Finding("error", f"cannot log in to PostgreSQL: {attempt.error}", data)
    return Finding("ok", f"logged in to PostgreSQL as the runbook's read-only session ({attempt.dsn})", data)


def application_clients(clients: pd.DataFrame) -> pd.DataFrame:
    """Client backends that are not the runbook's own session."""
    return clients[~clients["is_runbook"].astype(bool)] if len(clients) else clients


def count_by(clients: pd.DataFrame, column: str) -> pd.DataFrame:
    apps = application_clients(clients)
    if not len(apps):
        return pd.DataFrame({column: [], "connections": []})
    out = apps.fillna({column: "(none)"}).groupby(column).size().reset_index(name="connections")
    return out.sort_values("connections", ascending=False, ignore_index=True)


def usage(clients: pd.DataFrame, limits: dict[str, int]) -> dict[str, int]:
    """Slots in use against the limit; the runbook's own session is counted separately."""
    mine = int(clients["is_runbook"].astype(bool).sum()) if len(clients) else 0
    total = int(len(clients))
    reserved = limits["superuser_reserved_connections"] + limits.get("reserved_connections", 0)
    return {"in_use": total, "runbook_sessions": mine, "application": total - mine,
            "max_connections": limits["max_connections"], "reserved": reserved,
            "ordinary_slots": limits["max_connections"] - reserved}


def check_usage(u: dict[str, int], warn_pct: float) -> Finding:
    pct = 100.0 * u["in_use"] / max(u["max_connections"], 1)
    data = {**u, "used_pct": round(pct, 1), "warn_pct": warn_pct}
    text = (f"{u['in_use']} of max_connections={u['max_connections']} slots in use ({pct:.0f}%); "
            f"{u['ordinary_slots']} are open to ordinary roles")
    if pct >= warn_pct or u["application"] >= u["ordinary_slots"]:
        return Finding("critical", f"{text}: at or above the {warn_pct:g}% threshold or every ordinary slot taken",
                       data)
    if pct >= warn_pct * 0.8:
        return Finding("warn", f"{text}: approaching the {warn_pct:g}% threshold", data)
    return Finding("ok", text, data)


def idle_connections(clients: pd.DataFrame, database: str, idle_minutes: float) -> pd.DataFrame:
    """Idle application connections to this database idle for longer than ``idle_minutes``."""
    apps = application_clients(clients)
    if not len(apps):
        return apps
    old = apps[(apps["state"] == "idle") & (apps["database"] == database)
               & (apps["seconds_in_state"].astype(float) > idle_minutes * 60)]
    return old.sort_values("seconds_in_state", ascending=False, ignore_index=True)


def check_idle(idle: pd.DataFrame, u: dict[str, int], idle_minutes: float) -> Finding:
    n = int(len(idle))
    share = n / max(u["in_use"], 1)
    data = {"idle_older": n, "in_use": u["in_use"], "share": round(share, 3), "idle_minutes": idle_minutes,
            "pids": [int(p) for p in idle["pid"]] if n else [],
            "applications": sorted(set(idle["application_name"])) if n else []}
    text = f"{n} connections idle for more than {idle_minutes:g} min hold {share:.0%} of the {u['in_use']} used slots"
    # A quiet, healthy pool also keeps idle connections: only call it a leak when they crowd a busy server.
    pressure = u["in_use"] >= LEAK_PRESSURE * u["max_connections"]
    data["pressure"] = pressure
    if n and share >= 0.5 and not pressure:
        return Finding("ok", f"{text}, but only {u['in_use']} of {u['max_connections']} slots are used: "
                             "an idle pool, not a leak", {**data, "leak": False})
    if n and share >= 0.5:
        apps = ", ".join(data["applications"]) or "unnamed clients"
        return Finding("critical", f"{text}: a connection leak (held by {apps})", {**data, "leak": True})
    if n:
        return Finding("warn", text, {**data, "leak": False})
    return Finding("ok", text, {**data, "leak": False})


def check_pool_errors(lines: list[str]) -> Finding:
    hits = [line for line in lines if POOL_ERROR in line.lower()]
    data = {"lines_read": len(lines), "matches": len(hits), "examples": hits[-5:]}
    if hits:
        # supporting evidence only: the lines may predate the current state (logs keep history)
        return Finding("warn", f"{len(hits)} '{POOL_ERROR}' errors in the last {len(lines)} API log lines; "
                               f"latest: {hits[-1][:160]}", data)
    return Finding("ok", f"no '{POOL_ERROR}' error in the last {len(lines)} API log lines", data)


@reads(Step.LOGIN, Step.USAGE, Step.IDLE)
def diagnose(findings: list[Finding], params) -> Diagnosis:
    """connections-near-limit from usage or a refused login; idle-connection-leak from idle age."""
    f = by_check(findings)
    causes, why = [], []
    login, usage_f, idle_f = f.get(Step.LOGIN), f.get(Step.USAGE), f.get(Step.IDLE)
    if usage_f and usage_f.status == "critical":
        causes.append("connections-near-limit")
        why.append(usage_f.summary)
    elif login and login.data.get("slots_exhausted"):
        causes.append("connections-near-limit")
        why.append("the runbook's own login was refused for lack of connection slots, which proves the limit "
                   "is reached")
    if idle_f and idle_f.data.get("leak"):
        causes.append("idle-connection-leak")
        why.append(idle_f.summary)
    if not causes:
        return Diagnosis([], "Connection pool exhaustion not confirmed: " + measured(
            f, (Step.USAGE, Step.IDLE)))
    action = (" Recommended: terminate-idle-connections (idle > "
              f"{params.idle_minutes:g} min), then find the code path that leaks them."
              if "idle-connection-leak" in causes else
              " No idle leak: the load itself fills the pool; consider raising max_connections or pooling.")
    evidence = " ".join(w.rstrip(".") + "." for w in why)
    return Diagnosis(causes, f"Database connection pool exhausted. {evidence}{action}")


BREAKDOWN = {"state": "state", "application": "application_name", "client": "client"}


def breakdown(clients: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Application connections counted by state, by application and by client address."""
    return {label: count_by(clients, column).rename(columns={column: label}) for label, column in BREAKDOWN.items()}


def check_breakdown(tables: dict[str, pd.DataFrame]) -> Finding:
    tops = {label: (str(t.iloc[0][label]), int(t.iloc[0]["connections"])) for label, t in tables.items() if len(t)}
    if not tops:
        return Finding("ok", "no application connections", {})
    text = "; ".join(f"most by {label}: {name} ({n})" for label, (name, n) in tops.items())
    return Finding("ok", text, {label: t.to_dict("records") for label, t in tables.items()})


def usage_parts(clients: pd.DataFrame, idle_minutes: float) -> dict[str, int]:
    """Slots in use split for the chart: long-idle, other application states, the runbook itself."""
    apps = application_clients(clients)
    long_idle = (apps["state"] == "idle") & (apps["seconds_in_state"].astype(float) > idle_minutes * 60) if len(
        apps) else []
    n_idle = int(sum(long_idle)) if len(apps) else 0
    parts = {f"idle > {idle_minutes:g} min": n_idle}
    if len(apps):
        for state, n in apps[~long_idle]["state"].value_counts().items():
            parts[str(state)] = int(n)
    parts["runbook"] = int(len(clients) - len(apps))
    return parts
