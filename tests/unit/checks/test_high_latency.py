"""checks/high_latency.diagnose as a table: latency, load, queries, plan and cache findings in, causes out.

Each cause, and the traps: latency high but no slow query evidence (a missing index alone
does not make slow-queries), slow queries on an indexed table, a low hit rate on too few lookups,
a high request rate on the runbook's own /metrics scrapes, a DB pool full on a few scrapes only."""
from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from smartops_nb.checks import high_latency as hl
from tests.unit.checks import assert_diagnosis, at

PARAMS = SimpleNamespace(latency_p95_threshold_s=2.0)
DB_ENDPOINTS = ["/products", "/orders"]
INDEX = {"name": "orders_customer_idx", "table": "public.orders", "columns": ["customer_id"], "exists": True,
         "valid": True, "serving_indexes": []}
PLAN_SEQ = {"query": "SELECT * FROM orders WHERE customer_id = $1", "seq_scans": ["public.orders"],
            "indexes_used": [], "plan": ["Seq Scan on orders"]}
PLAN_INDEXED = {**PLAN_SEQ, "seq_scans": [], "indexes_used": ["orders_customer_idx"],
                "plan": ["Index Scan using orders_customer_idx on orders"]}


def latency(p95: float = 0.1, rps: float = 2.0, handler: str = "/orders", metrics_rps: float = 0.2) -> pd.DataFrame:
    return pd.DataFrame([{"handler": handler, "requests": int(rps * 60), "p95_s": p95, "rps": rps},
                         {"handler": "/metrics", "requests": int(metrics_rps * 60), "p95_s": 0.01, "rps": metrics_rps}])


def series(*values: float) -> pd.DataFrame:
    return pd.DataFrame({"value": list(values)})


def active(longest_s: float = 0.0) -> pd.DataFrame:
    rows = [{"pid": 4242, "duration_s": longest_s, "query": PLAN_SEQ["query"]}] if longest_s else []
    return pd.DataFrame(rows, columns=["pid", "duration_s", "query"])


def statements(mean_ms: float | None) -> pd.DataFrame | None:
    if mean_ms is None:
        return None
    return pd.DataFrame([{"query": PLAN_SEQ["query"], "mean_ms": mean_ms, "calls": 300}])


def pings(hits: int = 0, misses: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"t_s": [0.0, 30.0], "keyspace_hits": [1000, 1000 + hits],
                         "keyspace_misses": [50, 50 + misses]})


def findings(lat: pd.DataFrame | None = None, pool: tuple[pd.DataFrame, pd.DataFrame] | None = None,
             longest_s: float = 0.0, mean_ms: float | None = None, plan: dict | None = None, index: dict = INDEX,
             cache: pd.DataFrame | None = None, api: tuple[float | None, float | None] = (None, None)) -> list:
    lat = latency() if lat is None else lat
    in_use, size = pool or (series(2, 3), series(10))
    return [
        at(hl.Step.LATENCY, hl.check_latency(lat, 2.0, DB_ENDPOINTS, 60)),
        at(hl.Step.REQUEST_RATE, hl.check_load(lat, in_use, size, series(4), high_load_rps=50)),
        at(hl.Step.ACTIVE, hl.check_active_queries(active(longest_s), 1.0)),
        at(hl.Step.STATEMENTS, hl.check_statements(statements(mean_ms), 1.0)),
        at(hl.Step.PLAN, hl.check_plan(plan, index)),
        at(hl.Step.CACHE, hl.check_hit_rate(cache if cache is not None else pings(900, 100), *api,
                                            min_rate=0.8, min_lookups=50)),
    ]


SLOW = latency(p95=4.0)
MISSING_INDEX = {**INDEX, "exists": False}

CASES = {
    "fast and healthy": (findings(), [], "High latency not confirmed"),
    # ---- each cause
    "slow endpoint, long query, sequential scan": (
        findings(SLOW, longest_s=5.0, plan=PLAN_SEQ), ["slow-queries"], "Recommended: create-index"),
    "slow statements by history, index missing": (
        findings(SLOW, mean_ms=3000, plan=PLAN_INDEXED, index=MISSING_INDEX), ["slow-queries"], "missing"),
    "index left INVALID by a failed build": (
        findings(SLOW, plan=PLAN_SEQ, index={**INDEX, "valid": False}), ["slow-queries"], "INVALID"),
    "low hit rate in Redis": (findings(cache=pings(100, 400)), ["cache-misses"], "warm-cache"),
    "API counts lookups Redis never saw": (
        findings(cache=pings(0, 0), api=(10.0, 190.0)), ["cache-misses"], "Warming will not help"),
    "request rate above the threshold": (findings(latency(rps=80)), ["high-load"], "scale-api"),
    "the API's DB pool saturated": (findings(pool=(series(10, 10, 10, 4), series(10))), ["high-load"],
                                    "saturated"),
    "all three": (findings(latency(p95=4.0, rps=80), longest_s=5.0, plan=PLAN_SEQ, cache=pings(100, 400)),
                  ["slow-queries", "cache-misses", "high-load"], "High API latency."),
    # ---- traps: a symptom without its cause
    "latency high, the query's plan uses the index": (findings(SLOW, plan=PLAN_INDEXED), [], "worst p95 4.00 s"),
    "sequential scan while nothing is slow": (findings(plan=PLAN_SEQ), [], "not confirmed"),
    "latency high on an endpoint without the database": (
        findings(latency(p95=4.0, handler="/static"), plan=PLAN_SEQ), [], "not confirmed"),
    "missing index but no slow query evidence": (findings(plan=None, index=MISSING_INDEX), [], "not confirmed"),
    "slow queries on an indexed table": (findings(SLOW, longest_s=5.0, plan=PLAN_INDEXED), [], "not confirmed"),
    "another index serves the columns": (
        findings(SLOW, longest_s=5.0, plan=PLAN_INDEXED, index={**MISSING_INDEX, "serving_indexes": ["orders_c2"]}),
        [], "not confirmed"),
    "low hit rate on too few lookups": (findings(cache=pings(5, 20)), [], "not confirmed"),
    "a busy /metrics scraper is not load": (findings(latency(rps=1, metrics_rps=200)), [], "not confirmed"),
    "pool full on a few scrapes only": (findings(pool=(series(10, 3, 2, 4), series(10))), [], "not confirmed"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_diagnose(case):
    assert_diagnosis(hl.diagnose, CASES[case][0], PARAMS, *CASES[case][1:])


def test_slow_query_evidence_is_cited():
    d = hl.diagnose(findings(SLOW, longest_s=5.0, mean_ms=3000, plan=PLAN_SEQ), PARAMS)
    assert "p95 above 2 s on /orders" in d.summary and "longest running for 5.0 s" in d.summary
    assert "slowest statement by mean: 3000 ms" in d.summary


def test_no_pg_stat_statements_is_no_evidence_either_way():
    f = hl.check_statements(None, 1.0)
    assert f.status == "ok" and f.data == {"installed": False, "slow": False}
