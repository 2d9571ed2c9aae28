"""redis-memory-full against the sandbox's real Redis, filled for real.

The faults are driven here with the real server (no sandbox fault): ``maxmemory`` lowered to 2mb,
the policy set, then keys without TTL written until Redis refuses (noeviction) or evicts
(allkeys-lru). The ``redis_restored`` fixture puts the sandbox's maxmemory and policy back,
deletes the filler keys and resets the counters, before and after every test.
"""
from __future__ import annotations

import time

import pytest
import redis

from tests.conftest import run_runbook

FILLER = "smartops-test-filler:"
SMALL = "2mb"
VALUE = b"x" * 1024


def _client(sandbox) -> redis.Redis:
    return redis.Redis.from_url(sandbox.redis.url, socket_timeout=5, socket_connect_timeout=5)


def _restore(r: redis.Redis, sandbox) -> None:
    r.config_set("maxmemory", sandbox.redis.maxmemory)
    r.config_set("maxmemory-policy", sandbox.redis.policy)
    keys = list(r.scan_iter(match=FILLER + "*", count=1000))
    for i in range(0, len(keys), 1000):
        r.delete(*keys[i:i + 1000])
    r.delete("smartops-test:write-check")
    r.config_resetstat()


@pytest.fixture
def redis_restored(healthy_sandbox):
    r = _client(healthy_sandbox)
    _restore(r, healthy_sandbox)
    yield r
    _restore(r, healthy_sandbox)
    r.close()


def _fill(r: redis.Redis, policy: str, keys: int = 6000) -> dict:
    """Lower maxmemory, set the policy, write keys without TTL until refused or ``keys`` are written."""
    r.config_set("maxmemory-policy", policy)
    r.config_set("maxmemory", SMALL)
    written, refused = 0, 0
    for start in range(0, keys, 200):
        pipe = r.pipeline(transaction=False)
        for i in range(start, start + 200):
            pipe.set(f"{FILLER}{i}", VALUE)
        for reply in pipe.execute(raise_on_error=False):
            if isinstance(reply, redis.exceptions.OutOfMemoryError):
                refused += 1
            else:
                written += 1
        if refused:
            break
    # a pipeline's own query buffer counts as used memory, and Redis shrinks idle clients' buffers a
    # little later (clientsCron, 10 times a second): let that happen, then top up one key at a time
    # until refused, so the runbook finds used_memory over maxmemory, not just under it (CI saw 99.3%)
    if refused:
        time.sleep(0.5)
    for i in range(keys, keys + 2000 if refused else keys):
        try:
            r.set(f"{FILLER}{i}", VALUE)
        except redis.exceptions.OutOfMemoryError:
            break
    return {"written": written, "refused": refused, "evicted": r.info("stats")["evicted_keys"]}


def _writes_ok(r: redis.Redis) -> bool:
    try:
        r.set("smartops-test:write-check", b"y" * 4096, ex=5)
        return True
    except redis.exceptions.OutOfMemoryError:  # "OOM command not allowed ..." (redis-py strips the code)
        return False


def _params(sandbox_params, **extra):
    return {**sandbox_params, "eviction_window_s": 0.5, **extra}


def test_noeviction_filled_refuses_writes_and_investigation_changes_nothing(redis_restored, sandbox_params, archive):
    r = redis_restored
    filled = _fill(r, "noeviction")
    assert filled["refused"] and not _writes_ok(r)
    dbsize = r.dbsize()

    rec = run_runbook("redis-memory-full", archive, _params(sandbox_params))

    assert {"maxmemory-reached", "noeviction-policy", "keys-without-ttl"} <= set(rec.causes)
    assert "high-evictions" not in rec.causes
    assert "OOM command not allowed" in rec.summary["diagnosis"]["summary"]
    assert rec.finding("write-refusals")["data"]["writes_refused_now"]
    # investigate mode: both mitigations recommended, nothing executed, no key touched
    assert {a["action"] for a in rec.actions("recommended")} == {"flush-cache", "raise-maxmemory"}
    assert not rec.actions("executed")
    assert r.dbsize() == dbsize
    assert r.config_get("maxmemory")["maxmemory"] == str(2 * 1024 * 1024)


def test_allkeys_lru_filled_evicts(redis_restored, sandbox_params, archive):
    filled = _fill(redis_restored, "allkeys-lru")
    assert filled["evicted"] >= 1000 and not filled["refused"]

    rec = run_runbook("redis-memory-full", archive, _params(sandbox_params))

    assert {"high-evictions", "maxmemory-reached"} <= set(rec.causes)
    assert "noeviction-policy" not in rec.causes


def test_healthy_redis_confirms_nothing(redis_restored, sandbox_params, archive):
    rec = run_runbook("redis-memory-full", archive, _params(sandbox_params, mode="mitigate",
                                                            approved_actions=["flush-cache"]))
    assert rec.summary["diagnosis"]["confirmed"] is False and rec.causes == []
    assert rec.actions() == []
    assert rec.finding("memory-usage")["status"] == "ok"


def test_flush_cache_approved_makes_redis_accept_writes(redis_restored, sandbox_params, archive):
    r = redis_restored
    _fill(r, "noeviction")
    assert not _writes_ok(r)

    rec = run_runbook("redis-memory-full", archive, _params(sandbox_params, mode="mitigate",
                                                            approved_actions=["flush-cache"]))

    [flush] = rec.actions("executed")
    assert flush["action"] == "flush-cache" and flush["result"]["after"]["dbsize"] == 0
    assert r.dbsize() == 0 and _writes_ok(r)


def test_raise_maxmemory_approved(redis_restored, sandbox_params, archive):
    r = redis_restored
    _fill(r, "noeviction")
    dbsize = r.dbsize()

    rec = run_runbook("redis-memory-full", archive, _params(sandbox_params, mode="mitigate", new_maxmemory="32mb",
                                                            approved_actions=["raise-maxmemory"]))

    [raised] = rec.actions("executed")
    assert raised["action"] == "raise-maxmemory"
    assert r.config_get("maxmemory")["maxmemory"] == str(32 * 1024 * 1024)
    assert r.dbsize() == dbsize and _writes_ok(r)


def test_no_maxmemory_is_judged_against_container_or_host(redis_restored):
    """maxmemory 0: the container's limit when the platform answers, else the host's memory."""
    from smartops_nb.platforms.base import PlatformError, WorkloadState
    from smartops_nb.probes import redis as probe

    redis_restored.config_set("maxmemory", 0)
    mem = probe.memory_info(redis_restored)

    class Engine:
        def state(self, name):
            return WorkloadState(name, exists=True, running=True, memory_limit_bytes=512 * 2 ** 20)

    def unreachable():
        raise PlatformError("docker engine unreachable")

    assert probe.memory_ceiling(mem, Engine, "smartamazon-redis")["limit_bytes"] == 512 * 2 ** 20
    host = probe.memory_ceiling(mem, unreachable, "smartamazon-redis")
    assert host["source"].startswith("host") and host["limit_bytes"] == probe.host_memory_bytes()
    assert "unreachable" in host["note"]


def test_flush_is_asynchronous_and_says_so(redis_restored, healthy_sandbox):
    from smartops_nb.actions import carry_out
    from smartops_nb.mitigations import redis as redis_actions

    redis_restored.set(FILLER + "one", VALUE)
    mode, result = carry_out(redis_actions.flush_cache(redis_restored, healthy_sandbox.redis.url), "executed")
    assert mode == "executed" and result["asynchronous"] and result["command"] == "FLUSHDB ASYNC"
    assert result["after"]["dbsize"] == 0


def test_refusal_rule_reads_the_earlier_steps_and_never_claims_health_on_errors():
    from smartops_nb.checks import redis_memory as checks
    from smartops_nb.findings import Finding

    mem = Finding("critical", "m", {"used_bytes": 3_000_000, "maxmemory": 2_000_000, "policy": "noeviction",
                                    "used_pct": 150.0, "at_limit": True, "limit_bytes": 2_000_000}, "memory-usage")
    pol = Finding("warn", "p", {"policy": "noeviction", "keys_with_ttl": 0, "noeviction": True}, "eviction-policy")
    ev = Finding("ok", "e", {"oom_errors": 4, "oom_in_window": 0, "window_s": 0.5}, "evictions")
    w = checks.write_refusals([mem, pol, ev])
    assert w["writes_refused_now"] and w["oom_errors"] == 4
    with pytest.raises(RuntimeError, match="evictions"):
        checks.write_refusals([mem, pol, Finding("error", "x", check="evictions")])
    diag = checks.diagnose([Finding("error", "Memory: could not complete (boom)", check="memory-usage"),
                            Finding("error", "Refusals: could not complete (boom)", check="write-refusals")], None)
    assert not diag.causes and "below the threshold" not in diag.summary and "nothing was measured" in diag.summary


def test_just_under_maxmemory_after_refusals_still_names_them():
    """CI saw it: filled until refused, then used_memory back at 99.3% when the runbook read it (client
    buffers freed) and no refusal inside the short window; the refusals since start are the evidence."""
    from smartops_nb.checks import redis_memory as checks
    from smartops_nb.findings import Finding

    mem = Finding("critical", "m", {"used_bytes": 2_082_000, "maxmemory": 2_097_152, "policy": "noeviction",
                                    "used_pct": 99.3, "at_limit": True, "limit_bytes": 2_097_152}, "memory-usage")
    pol = Finding("warn", "p", {"policy": "noeviction", "keys_with_ttl": 0, "noeviction": True}, "eviction-policy")
    ev = Finding("ok", "e", {"oom_errors": 7, "oom_in_window": 0, "window_s": 0.5, "high": False}, "evictions")
    w = checks.write_refusals([mem, pol, ev])
    assert not w["writes_refused_now"]
    wr = checks.check_write_refusals(w)
    wr.check = "write-refusals"
    diag = checks.diagnose([mem, pol, ev, wr], None)
    assert diag.causes == ["maxmemory-reached", "noeviction-policy"]
    assert "already refused 7 writes with 'OOM command not allowed'" in diag.summary
