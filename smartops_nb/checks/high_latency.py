"""Who decides ``slow-queries``, ``cache-misses`` and ``high-load``: the high-latency checks.

Pure functions: probe data in (DataFrames and dicts), :class:`Finding` / :class:`Diagnosis` out.
"""
from __future__ import annotations

from enum import StrEnum

import math
from typing import Any

import pandas as pd

from smartops_nb.findings import Diagnosis, Finding, by_check, reads
from .common import check_health, measured  # noqa: F401


class Step(StrEnum):
    """The step ids of this runbook's notebook cells (``run.step(Step.X, ...)``), read by the checks below."""

    HEALTH = "api-health"
    LATENCY = "endpoint-latency"
    REQUEST_RATE = "request-rate"
    REDIS_LATENCY = "redis-latency"
    ACTIVE = "active-queries"
    STATEMENTS = "statement-stats"
    PLAN = "query-plan"
    CACHE = "cache-hit-rate"


MONITORING_HANDLERS = ("/metrics",)   # the runbook's own scrapes are not user traffic
POOL_IN_USE = "smartamazon_db_pool_in_use"
POOL_SIZE = "smartamazon_db_pool_size"
IN_FLIGHT = "smartamazon_http_requests_in_flight"
API_CACHE_HITS = "smartamazon_cache_hits_total"
API_CACHE_MISSES = "smartamazon_cache_misses_total"


def _records(df: pd.DataFrame) -> list[dict]:
    return df.astype(object).where(df.notna(), None).to_dict("records")


def user_traffic(latency: pd.DataFrame) -> pd.DataFrame:
    return latency[~latency["handler"].isin(MONITORING_HANDLERS)]


def check_latency(latency: pd.DataFrame, threshold_s: float, db_endpoints: list[str], window_s: float) -> Finding:
    """p95 per endpoint over the window against ``threshold_s`` (endpoints with requests only)."""
    seen = user_traffic(latency)
    seen = seen[seen["requests"] > 0]
    slow = seen[seen["p95_s"] > threshold_s]
    data = {"threshold_s": threshold_s, "window_s": round(window_s, 1), "endpoints": _records(latency),
            "slow_endpoints": list(slow["handler"]),
            "slow_db_endpoints": [h for h in slow["handler"] if h in db_endpoints]}
    if not len(seen):
        return Finding("ok", f"no user request completed in the {window_s:.0f} s window: no latency to judge", data)
    worst = seen.sort_values("p95_s", ascending=False).iloc[0]
    text = (f"worst p95 {worst['p95_s']:.2f} s on {worst['handler']} ({int(worst['requests'])} requests in "
            f"{window_s:.0f} s)")
    if len(slow):
        return Finding("critical", f"{text}: p95 above {threshold_s:g} s on {', '.join(slow['handler'])}", data)
    return Finding("ok", f"{text}: every endpoint's p95 is within {threshold_s:g} s", data)


def check_load(latency: pd.DataFrame, pool_in_use: pd.DataFrame, pool_size: pd.DataFrame,
               in_flight: pd.DataFrame, high_load_rps: float) -> Finding:
    """Request rate against ``high_load_rps``; DB pool saturation (in use = size on most scrapes)."""
    traffic = user_traffic(latency)
    rps = float(traffic["rps"].sum()) if len(traffic) else 0.0
    size = float(pool_size["value"].max()) if len(pool_size) else math.nan
    saturated_share = (float((pool_in_use["value"] >= size).mean()) if len(pool_in_use) and size > 0 else 0.0)
    data = {"rps": round(rps, 2), "high_load_rps": high_load_rps,
            "rps_by_endpoint": {h: r for h, r in zip(traffic["handler"], traffic["rps"])},
            "pool_size": None if math.isnan(size) else size,
            "pool_in_use_max": float(pool_in_use["value"].max()) if len(pool_in_use) else None,
            "pool_saturated_share": round(saturated_share, 2),
            "in_flight_max": float(in_flight["value"].max()) if len(in_flight) else None}
    text = f"{rps:.1f} user requests/s (threshold {high_load_rps:g})"
    if not math.isnan(size):
        text += f"; DB pool {data['pool_in_use_max']:.0f}/{size:.0f} at most, full on {saturated_share:.0%} of scrapes"
    if rps > high_load_rps:
        return Finding("critical", f"{text}: request rate above the threshold", {**data, "cause": "request-rate"})
    if saturated_share >= 0.5:
        return Finding("critical", f"{text}: the API's DB pool is saturated", {**data, "cause": "pool-saturated"})
    return Finding("ok", text, data)


def check_active_queries(active: pd.DataFrame, threshold_s: float) -> Finding:
    n = int(len(active))
    longest = float(active["duration_s"].max()) if n else 0.0
    data = {"active": n, "longest_s": round(longest, 2), "threshold_s": threshold_s,
            "queries": [{"pid": int(r["pid"]), "duration_s": round(float(r["duration_s"] or 0), 2),
                         "query": str(r["query"])[:300]} for _, r in active.head(5).iterrows()]}
    if n and longest > threshold_s:
        return Finding("warn", f"{n} active queries, the longest running for {longest:.1f} s "
                               f"(over {threshold_s:g} s)", {**data, "slow": True})
    return Finding("ok", f"{n} active application queries, longest {longest:.2f} s", {**data, "slow": False})


def check_statements(stats: pd.DataFrame | None, threshold_s: float) -> Finding:
    if stats is None:
        return Finding("ok", "pg_stat_statements is not installed: no per-statement history (see active queries)",
                       {"installed": False, "slow": False})
    top = _records(stats.head(5).assign(query=stats["query"].head(5).str.slice(0, 300)))
    data = {"installed": True, "threshold_s": threshold_s, "top": top}
    if not len(stats):
        return Finding("ok", "pg_stat_statements has no application statements yet", {**data, "slow": False})
    worst = stats.iloc[0]
    text = f"slowest statement by mean: {float(worst['mean_ms']):.0f} ms over {int(worst['calls'])} calls"
    if float(worst["mean_ms"]) > threshold_s * 1000:
        return Finding("warn", f"{text} (over {threshold_s:g} s)", {**data, "slow": True})
    return Finding("ok", text, {**data, "slow": False})


def check_plan(plan: dict[str, Any] | None, index: dict[str, Any]) -> Finding:
    """Is the expected index there (valid, or another index serving its columns), and does the
    slowest query read its table sequentially?"""
    table, name = index["table"], index["name"]
    served = index["exists"] and index["valid"] or bool(index["serving_indexes"])
    seq = bool(plan) and any(t.split(".")[-1] == table.split(".")[-1] for t in plan["seq_scans"])
    data = {"index": {k: index[k] for k in ("name", "table", "columns", "exists", "valid", "serving_indexes")},
            "query": (plan or {}).get("query", "")[:500], "seq_scans": (plan or {}).get("seq_scans", []),
            "indexes_used": (plan or {}).get("indexes_used", []), "plan": (plan or {}).get("plan", [])[:30],
            "missing_index": not served, "seq_scan_on_table": seq}
    state = ("present" if served else "INVALID (a failed CONCURRENTLY build)" if index["exists"] else "missing")
    where = f"index {name} on {table}({', '.join(index['columns'])}) {state}"
    if not plan:
        how = "no query to explain (nothing active, no pg_stat_statements history)"
    elif seq:
        how = f"the slowest query reads {table} with a sequential scan"
    else:
        how = f"the slowest query uses {', '.join(plan['indexes_used']) or 'no index on ' + table}"
    if not served or seq:
        return Finding("critical", f"{where}; {how}", data)
    return Finding("ok", f"{where}; {how}", data)


def _rate(hits: float | None, misses: float | None) -> tuple[float | None, int]:
    if hits is None or misses is None:
        return None, 0
    n = int(hits + misses)
    return (hits / n if n else None), n


def check_redis_latency(pings: pd.DataFrame, warn_ms: float) -> Finding:
    timed = pings[pings["error"] != ""] if len(pings) else pings
    ok = pings["ping_ms"].dropna() if len(pings) else pd.Series(dtype=float)
    errors = int((pings["error"] != "").sum()) if len(pings) else 0
    data = {"pings": int(len(ok)) + errors, "errors": errors, "warn_ms": warn_ms,
            "p50_ms": round(float(ok.quantile(0.5)), 3) if len(ok) else None,
            "p95_ms": round(float(ok.quantile(0.95)), 3) if len(ok) else None,
            "max_ms": round(float(ok.max()), 3) if len(ok) else None,
            "example_errors": list(timed["error"].head(3)) if errors else []}
    if not len(ok):
        return Finding("error", f"no Redis PING answered ({errors} failed)", data)
    text = f"Redis PING p50 {data['p50_ms']:.2f} ms, p95 {data['p95_ms']:.2f} ms over {data['pings']} pings"
    if errors or data["p95_ms"] > warn_ms:
        return Finding("warn", f"{text}; {errors} failed" if errors else f"{text}: above {warn_ms:g} ms", data)
    return Finding("ok", text, data)


def check_hit_rate(pings: pd.DataFrame, api_hits: float | None, api_misses: float | None,
                   min_rate: float, min_lookups: int) -> Finding:
    """Cache hit rate over the window, from Redis (keyspace_hits/misses delta) and from the API's
    own cache counters when it exports them; a source needs ``min_lookups`` to be judged."""
    first, last = pings.iloc[0], pings.iloc[-1]
    r_rate, r_n = _rate(float(last["keyspace_hits"] - first["keyspace_hits"]),
                        float(last["keyspace_misses"] - first["keyspace_misses"]))
    a_rate, a_n = _rate(api_hits, api_misses)
    total = float(last["keyspace_hits"] + last["keyspace_misses"])
    data = {"redis": {"lookups": r_n, "hit_rate": r_rate}, "api": {"lookups": a_n, "hit_rate": a_rate},
            "redis_lifetime_hit_rate": round(float(last["keyspace_hits"]) / total, 3) if total else None,
            "min_rate": min_rate, "min_lookups": min_lookups}
    judged = {src: (rate, n) for src, (rate, n) in (("Redis", (r_rate, r_n)), ("API", (a_rate, a_n)))
              if rate is not None and n >= min_lookups}
    parts = [f"{src} {rate:.0%} of {n} lookups" for src, (rate, n) in judged.items()]
    if not judged:
        note = ""
        if a_n and not r_n:
            note = "; the API counted lookups but Redis saw none"
        return Finding("ok", f"too few cache lookups in the window to judge (Redis {r_n}, API {a_n}, "
                             f"need {min_lookups}){note}", {**data, "low": False})
    low = {src: v for src, v in judged.items() if v[0] < min_rate}
    text = f"cache hit rate over the window: {'; '.join(parts)} (minimum {min_rate:.0%})"
    if low:
        why = ("; Redis saw none of the API's lookups: the API is not reading the cache"
               if "API" in low and r_n == 0 and a_n else "")
        return Finding("critical", text + why, {**data, "low": True, "api_bypasses_cache": bool(why)})
    return Finding("ok", text, {**data, "low": False})


@reads(Step.LATENCY, Step.REQUEST_RATE, Step.ACTIVE, Step.STATEMENTS, Step.PLAN, Step.CACHE)
def diagnose(findings: list[Finding], params) -> Diagnosis:
    f = by_check(findings)
    causes, why = [], []
    plan, lat = f.get(Step.PLAN), f.get(Step.LATENCY)
    active, stats = f.get(Step.ACTIVE), f.get(Step.STATEMENTS)
    slow_evidence = []
    if lat and lat.data.get("slow_db_endpoints"):
        slow_evidence.append(f"p95 above {params.latency_p95_threshold_s:g} s on "
                             f"{', '.join(lat.data['slow_db_endpoints'])}")
    if active and active.data.get("slow"):
        slow_evidence.append(active.summary)
    if stats and stats.data.get("slow"):
        slow_evidence.append(stats.summary)
    if plan and plan.status == "critical" and slow_evidence:
        causes.append("slow-queries")
        why.append(f"Slow queries: {plan.summary}; {'; '.join(slow_evidence)}. Recommended: create-index.")
    hit = f.get(Step.CACHE)
    if hit and hit.data.get("low"):
        causes.append("cache-misses")
        fix = ("Warming will not help: check the API's cache configuration"
               if hit.data.get("api_bypasses_cache") else "Recommended: warm-cache, then review TTLs")
        why.append(f"Cache misses: {hit.summary}. {fix}.")
    load = f.get(Step.REQUEST_RATE)
    if load and load.status == "critical":
        causes.append("high-load")
        why.append(f"High load: {load.summary}. Recommended: scale-api.")
    if not causes:
        return Diagnosis([], "High latency not confirmed: " + measured(
            f, (Step.LATENCY, Step.PLAN, Step.CACHE, Step.REQUEST_RATE)))
    return Diagnosis(causes, "High API latency. " + " ".join(why))


def api_cache_deltas(snapshots: list[dict]) -> tuple[float | None, float | None]:
    """The API's own cache hit/miss counter increases over two /metrics snapshots (None if absent)."""
    from smartops_nb.probes.metrics import counter_delta

    return counter_delta(snapshots, API_CACHE_HITS), counter_delta(snapshots, API_CACHE_MISSES)


def hit_series(pings: pd.DataFrame) -> pd.DataFrame:
    """Redis lookups since the start of the window, per tick, for the chart."""
    d = pings.drop_duplicates("t_s")
    return pd.DataFrame({"t_s": d["t_s"], "hits": d["keyspace_hits"] - d["keyspace_hits"].iloc[0],
                         "misses": d["keyspace_misses"] - d["keyspace_misses"].iloc[0]})


def plan_table(plan: dict[str, Any] | None) -> pd.DataFrame:
    return pd.DataFrame({"plan": (plan or {}).get("plan", [])})
