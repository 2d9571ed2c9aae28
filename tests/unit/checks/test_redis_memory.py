"""checks/redis_memory.diagnose as a table: memory, policy, evictions, refusals and TTLs in, causes out.

Each cause, and the traps: noeviction configured while memory is low (a policy is no cause by
itself), many keys without TTL while memory is fine, refusals seen since start but none now,
a volatile-* policy with nothing evictable, memory near but under the threshold."""
from __future__ import annotations

import pandas as pd
import pytest

from smartops_nb.checks import redis_memory as rm
from tests.unit.checks import assert_diagnosis, at, failed

MIB = 1024 * 1024
LIMIT = 100 * MIB


def mem(used_mib: float, policy: str = "allkeys-lru", maxmemory: int = LIMIT) -> dict:
    used = int(used_mib * MIB)
    return {"used_memory": used, "maxmemory": maxmemory, "maxmemory_policy": policy, "used_memory_rss": used,
            "used_memory_dataset": used // 2, "used_memory_overhead": used // 2}


def ceiling(maxmemory: int = LIMIT) -> dict:
    return ({"limit_bytes": maxmemory, "source": "maxmemory"} if maxmemory else
            {"limit_bytes": 512 * MIB, "source": "container memory limit", "note": "maxmemory is 0"})


def counters(evicted: int = 0, in_window: int = 0, oom: int | None = 0, oom_window: int = 0) -> dict:
    return {"evicted_keys": evicted, "evicted_in_window": in_window, "window_s": 30.0, "uptime_s": 3600,
            "oom_errors": oom, "oom_in_window": oom_window}


def sample(keys: int = 20, no_ttl: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"key": [f"cache:{i}" for i in range(keys)], "prefix": "cache",
                         "ttl_s": [-1] * no_ttl + [300] * (keys - no_ttl), "memory_bytes": [4096] * keys})


def findings(m: dict, with_ttl: int = 100, ev: dict | None = None, keys: pd.DataFrame | None = None,
             refusals: bool = True) -> list:
    ev = ev or counters()
    out = [at(rm.Step.MEMORY, rm.check_memory(rm.usage(m, ceiling(m["maxmemory"])), 90.0)),
           at(rm.Step.POLICY, rm.check_policy(m, {"db0": {"keys": 200, "expires": with_ttl}})),
           at(rm.Step.EVICTIONS, rm.check_evictions(ev, warn_total=1000))]
    out.append(at(rm.Step.REFUSALS, rm.check_write_refusals(rm.write_refusals(out))) if refusals
               else failed(rm.Step.REFUSALS))
    out.append(at(rm.Step.NO_TTL, rm.check_ttl(rm.ttl_summary(keys if keys is not None else sample()), 50.0, 200)))
    return out


NOEV = "noeviction"
REACHED, NOEVICTION, EVICTIONS, NO_TTL = "maxmemory-reached", "noeviction-policy", "high-evictions", "keys-without-ttl"

CASES = {
    "plenty of room": (findings(mem(30)), [], "Redis memory full not confirmed"),
    # ---- each cause
    "over maxmemory under noeviction: writes refused": (
        findings(mem(101, NOEV)), [REACHED, NOEVICTION], "Writes refused: 'OOM command not allowed' under noeviction"),
    "at the limit under noeviction, refusing in the window": (
        findings(mem(95, NOEV), ev=counters(oom=12, oom_window=3)), [REACHED, NOEVICTION], "Writes refused"),
    "at the limit under LRU, still evicting": (
        findings(mem(95), ev=counters(evicted=5000, in_window=40)), [REACHED, EVICTIONS], "evicting keys"),
    "evictions without being at the limit now": (findings(mem(60), ev=counters(in_window=3)), [EVICTIONS],
                                                  "still evicting"),
    "volatile policy with nothing evictable, over the limit": (
        findings(mem(101, "volatile-lru"), with_ttl=0), [REACHED], "volatile-lru (nothing evictable)"),
    "pinned by keys that never expire": (
        findings(mem(95, NOEV), keys=sample(20, no_ttl=18)), [REACHED, NOEVICTION, NO_TTL], "never expire"),
    "no maxmemory: grows until killed": (
        findings(mem(480, maxmemory=0)), [REACHED], "grows until the kernel kills it"),
    "just under the limit, refused earlier": (
        findings(mem(95, NOEV), ev=counters(oom=7)), [REACHED, NOEVICTION], "already refused 7 writes"),
    # ---- traps: a symptom without its cause
    "noeviction configured, memory low": (findings(mem(30, NOEV)), [], "not confirmed"),
    "keys without TTL, memory fine": (findings(mem(30), keys=sample(20, no_ttl=20)), [], "not confirmed"),
    "approaching the threshold": (findings(mem(80, NOEV)), [], "approaching"),
    "refusals since start, none now": (findings(mem(40, NOEV), ev=counters(oom=7)), [], "writes are accepted now"),
    "a few evictions long ago": (findings(mem(40), ev=counters(evicted=12)), [], "not confirmed"),
    "refusal step did not run, memory fine": (findings(mem(40, NOEV), refusals=False), [], "not confirmed"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_diagnose(case):
    assert_diagnosis(rm.diagnose, CASES[case][0], None, *CASES[case][1:])


def test_refusal_rule_needs_its_inputs():
    only_memory = [at(rm.Step.MEMORY, rm.check_memory(rm.usage(mem(30), ceiling()), 90.0))]
    with pytest.raises(RuntimeError, match="eviction-policy, evictions"):
        rm.write_refusals(only_memory)


def test_without_errorstats_refusals_are_not_counted():
    w = rm.write_refusals(findings(mem(40), ev=counters(oom=None))[:3])
    f = rm.check_write_refusals(w)
    assert f.status == "ok" and "no INFO errorstats" in f.summary
