"""high-latency against the real sandbox: slow-queries, cache-misses, healthy, create-index, warm-cache."""
from __future__ import annotations

import psycopg
import redis

from tests.conftest import run_runbook

# the cache faults' simulated user makes ~5 lookups/s: 5 s give ~25, well above cache_min_lookups (10)
# even when a loaded machine halves the rate
FAST = {"sample_seconds": 5.0, "sample_interval": 1.0}
# a slow search takes ~5 s under the fault: the window must outlast one, or it may see no search complete
# and, between queries, no long-running one either (the runbook's default window is 10 s)
SLOW = {"sample_seconds": 8.0, "sample_interval": 1.0}
INDEX = "idx_products_category_rating"
SEARCH = "SELECT id FROM products WHERE category = 'protein' ORDER BY rating DESC LIMIT 20"


def _index_exists(sb) -> bool:
    with psycopg.connect(sb.postgres.dsn(user="smartops"), autocommit=True, connect_timeout=5) as c:
        return bool(c.execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", (INDEX,)).fetchone())


def _plan(sb) -> str:
    with psycopg.connect(sb.postgres.dsn(user="smartops"), autocommit=True, connect_timeout=5) as c:
        return "\n".join(r[0] for r in c.execute("EXPLAIN " + SEARCH))


def test_slow_queries_diagnosed_and_index_left_alone_in_investigate(healthy_sandbox, sandbox_params, archive):
    healthy_sandbox.fault("slow-queries")
    rec = run_runbook("high-latency", archive, {**sandbox_params, **SLOW})
    assert "slow-queries" in rec.causes, [(f["check"], f["summary"]) for f in rec.summary["findings"]]
    assert rec.finding("query-plan")["data"]["missing_index"]
    assert [a["mode"] for a in rec.actions() if a["action"] == "create-index"] == ["recommended"]
    assert not _index_exists(healthy_sandbox) and "Seq Scan" in _plan(healthy_sandbox)


def test_create_index_approved_makes_the_query_use_it(healthy_sandbox, sandbox_params, archive):
    healthy_sandbox.fault("slow-queries")
    rec = run_runbook("high-latency", archive, {**sandbox_params, **SLOW, "mode": "mitigate",
                                                "approved_actions": ["create-index"]})
    (act,) = [a for a in rec.actions() if a["action"] == "create-index"]
    assert act["mode"] == "executed", act
    assert not act["result"]["before"]["index_exists"] and act["result"]["after"]["index_exists"]
    assert INDEX in act["result"]["after"]["indexes_used"]
    assert _index_exists(healthy_sandbox) and f"Index Scan Backward using {INDEX}" in _plan(healthy_sandbox)


def test_cache_bypass_is_cache_misses(healthy_sandbox, sandbox_params, archive):
    healthy_sandbox.fault("cache-bypass")
    rec = run_runbook("high-latency", archive, {**sandbox_params, **FAST})
    assert "cache-misses" in rec.causes
    assert rec.finding("cache-hit-rate")["data"]["api_bypasses_cache"]


def test_warm_cache_approved_serves_warmed_urls_from_cache(healthy_sandbox, sandbox_params, archive):
    healthy_sandbox.fault("cold-cache")
    r = redis.Redis.from_url(sandbox_params["redis_url"], socket_timeout=3)
    rec = run_runbook("high-latency", archive, {**sandbox_params, **FAST})
    assert "cache-misses" in rec.causes
    assert [a["mode"] for a in rec.actions() if a["action"] == "warm-cache"] == ["recommended"]
    rec = run_runbook("high-latency", archive, {**sandbox_params, **FAST, "mode": "mitigate",
                                                "approved_actions": ["warm-cache"]})
    (act,) = [a for a in rec.actions() if a["action"] == "warm-cache"]
    assert act["mode"] == "executed", act
    # the run measured misses over its window (that is why it acted); after warming, the API answers
    # every warmed URL from the cache. Redis's counters are server-wide: the fault's simulated users
    # (2 s TTL) may miss during the verification pass, so its hit rate is evidence, not an exact figure;
    # the warmed lookups' own hits are in it all the same.
    assert "cache-misses" in rec.causes
    assert set(act["result"]["from_cache_after"].values()) == {True}, act["result"]
    assert act["result"]["verification_pass"]["hits"] >= len(act["result"]["from_cache_after"]) == 2
    assert r.exists("search:protein")


def test_healthy_sandbox_confirms_nothing(healthy_sandbox, sandbox_params, archive):
    rec = run_runbook("high-latency", archive, {**sandbox_params, **FAST})
    assert rec.exit_code == 0
    assert not rec.summary["diagnosis"]["confirmed"] and rec.causes == []
    assert rec.actions("executed") == []
    assert not [f for f in rec.summary["findings"] if f["status"] == "error"]


def test_a_bad_expected_index_fails_the_action_not_the_notebook():
    from smartops_nb.actions import carry_out
    from smartops_nb.mitigations import postgres as pg_actions

    action = pg_actions.create_index(None, "DROP TABLE products")  # constructing it must not raise
    mode, result = carry_out(action, "executed")
    assert mode == "failed" and "CREATE INDEX" in result["error"]


def test_warm_cache_reads_the_apis_own_cached_flag():
    from smartops_nb.mitigations.cache import _from_cache

    assert _from_cache('{"query": "protein", "cached": true, "count": 20, "results": [{"id": 1') is True
    assert _from_cache('{"cached":false,"categories": []}') is False
    assert _from_cache("<html>ok</html>") is None and _from_cache("") is None


# the sandbox's burst (8 users, no think time, cached pages; ~900 requests/s measured on an idle machine)
# against a threshold it clears with room on a loaded CI machine; the healthy test above keeps the
# notebook's default (100/s) and sees ~0/s.
LOAD_RPS = 20.0


def test_high_load_is_diagnosed_and_scale_api_scales_the_deployment(healthy_sandbox, sandbox_params, kube_api,
                                                                    kube_params, archive):
    ns, app = kube_params["kube_namespace"], kube_params["api_deployment"]
    params = {**sandbox_params, **kube_params, "api_url": sandbox_params["api_url"], **FAST,
              "high_load_rps": LOAD_RPS}
    healthy_sandbox.fault("high-load")
    rec = run_runbook("high-latency", archive, params)
    assert "high-load" in rec.causes, rec.summary["diagnosis"]
    load = rec.finding("request-rate")
    assert load["status"] == "critical" and load["data"]["rps"] > LOAD_RPS, load
    assert [a["mode"] for a in rec.actions() if a["action"] == "scale-api"] == ["recommended"]
    assert kube_api.get_deployment(ns, app)["spec"]["replicas"] == 2

    # the burst lasts 60 s and a run on a busy machine can take most of that: a fresh burst for the
    # mitigating run (seen: the second run found no load left, and recommended nothing)
    healthy_sandbox.fault("high-load")
    rec = run_runbook("high-latency", archive, {**params, "mode": "mitigate", "approved_actions": ["scale-api"],
                                                "scale_replicas": 4})
    (act,) = [a for a in rec.actions() if a["action"] == "scale-api"]
    assert act["mode"] == "executed", act
    assert act["result"]["before"]["state"]["replicas_desired"] == 2, act["result"]["before"]
    assert act["result"]["after"]["state"]["replicas_ready"] == 4, act["result"]["after"]
    assert kube_api.get_deployment(ns, app)["spec"]["replicas"] == 4
