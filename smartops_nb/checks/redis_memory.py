"""Who decides ``maxmemory-reached``, ``noeviction-policy``, ``high-evictions``, ``keys-without-ttl``.

Pure functions: data from the Redis probe in, :class:`Finding` or :class:`Diagnosis` out.
"""
from __future__ import annotations

from enum import StrEnum

import pandas as pd

from smartops_nb.findings import Diagnosis, Finding, by_check, reads
from .common import measured, mib


class Step(StrEnum):
    """The step ids of this runbook's notebook cells (``run.step(Step.X, ...)``), read by the checks below."""

    MEMORY = "memory-usage"
    POLICY = "eviction-policy"
    EVICTIONS = "evictions"
    REFUSALS = "write-refusals"
    NO_TTL = "keys-without-ttl"
    PREFIXES = "key-prefixes"


def usage(mem: dict, ceiling: dict) -> dict:
    limit = max(int(ceiling["limit_bytes"]), 1)
    return {"used_bytes": mem["used_memory"], "limit_bytes": int(ceiling["limit_bytes"]),
            "limit_source": ceiling["source"], "note": ceiling.get("note", ""),
            "used_pct": round(100.0 * mem["used_memory"] / limit, 1), "policy": mem["maxmemory_policy"],
            "maxmemory": mem["maxmemory"], "rss_bytes": mem["used_memory_rss"]}


def usage_parts(mem: dict) -> dict[str, float]:
    """Used memory in MiB split for the chart: data set and Redis's own overhead."""
    return {"dataset": mib(mem["used_memory_dataset"]), "overhead": mib(mem["used_memory_overhead"])}


def check_memory(u: dict, warn_pct: float) -> Finding:
    text = (f"Redis uses {mib(u['used_bytes'])} MiB of {mib(u['limit_bytes'])} MiB ({u['limit_source']}), "
            f"{u['used_pct']:g}%")
    if u["note"]:
        text += f" [{u['note']}]"
    data = {**u, "warn_pct": warn_pct, "at_limit": u["used_pct"] >= warn_pct}
    if u["used_pct"] >= warn_pct:
        return Finding("critical", f"{text}: at or above the {warn_pct:g}% threshold", data)
    if u["used_pct"] >= warn_pct * 0.8:
        return Finding("warn", f"{text}: approaching the {warn_pct:g}% threshold", data)
    return Finding("ok", text, data)


def check_policy(mem: dict, ks: dict) -> Finding:
    policy = mem["maxmemory_policy"]
    with_ttl = sum(db["expires"] for db in ks.values())
    data = {"policy": policy, "maxmemory": mem["maxmemory"], "keys_with_ttl": with_ttl,
            "noeviction": policy == "noeviction"}
    if policy == "noeviction":
        return Finding("warn", "maxmemory-policy is noeviction: when maxmemory is reached Redis evicts nothing "
                               "and refuses every write with 'OOM command not allowed'", data)
    if policy.startswith("volatile-") and with_ttl == 0:
        return Finding("warn", f"maxmemory-policy is {policy} but no key has a TTL: nothing can be evicted, "
                               "writes will be refused at maxmemory", {**data, "nothing_evictable": True})
    if not mem["maxmemory"]:
        return Finding("ok", f"maxmemory-policy is {policy}, but maxmemory is 0: the policy never applies",
                       data)
    return Finding("ok", f"maxmemory-policy is {policy}: Redis evicts keys at maxmemory instead of refusing "
                         "writes", data)


def check_evictions(c: dict, warn_total: int) -> Finding:
    rate = f"{c['evicted_in_window']} in the last {c['window_s']:g} s"
    text = (f"{c['evicted_keys']} keys evicted since the server started or its stats were reset "
            f"(uptime {c['uptime_s']} s); {rate}")
    high = c["evicted_in_window"] > 0 or c["evicted_keys"] >= warn_total
    data = {**c, "warn_total": warn_total, "high": high}
    if high:
        why = "still evicting" if c["evicted_in_window"] > 0 else f"at least {warn_total} evicted"
        return Finding("critical", f"{text}: {why}, cached data is being thrown away (cache misses follow)", data)
    if c["evicted_keys"]:
        return Finding("warn", text, data)
    return Finding("ok", text, data)


REFUSAL_INPUTS = (Step.MEMORY, Step.POLICY, Step.EVICTIONS)


def write_refusals(findings: list[Finding]) -> dict:
    """Are writes refused with "OOM command not allowed"? Answered from what the memory-usage,
    eviction-policy and evictions steps already read: no second INFO, no second window, no write.

    Decision: no test write. A ``SET`` of a probe key, even with a TTL and deleted at once, is a
    write to a production cache that is out of memory: under an LRU policy it evicts a real key
    to make room, and it adds an OOM error to the very counters we read. Redis itself counts the
    refusals it sent to clients in ``INFO errorstats`` (``errorstat_OOM``, Redis >= 6.2, read by the
    evictions step over its window), and the refusal rule is known: a write is refused when
    ``used_memory`` exceeds ``maxmemory`` and the policy cannot evict (``noeviction``, or a
    ``volatile-*`` policy with no key carrying a TTL).
    """
    f = by_check(findings)
    missing = [c for c in REFUSAL_INPUTS if c not in f or f[c].status == "error"]
    if missing:
        raise RuntimeError(f"the refusal rule needs the {', '.join(missing)} step(s), which did not complete")
    mem, pol, ev = (f[c].data for c in REFUSAL_INPUTS)
    policy, maxmemory, used = pol["policy"], int(mem["maxmemory"] or 0), int(mem["used_bytes"])
    over = maxmemory > 0 and used > maxmemory
    cannot_evict = policy == "noeviction" or (policy.startswith("volatile-") and pol["keys_with_ttl"] == 0)
    return {"maxmemory": maxmemory, "used_memory": used, "policy": policy, "keys_with_ttl": pol["keys_with_ttl"],
            "over_maxmemory": over, "cannot_evict": cannot_evict, "writes_refused_now": bool(over and cannot_evict),
            "errorstats_available": ev["oom_errors"] is not None, "oom_errors": ev["oom_errors"],
            "oom_in_window": ev["oom_in_window"], "window_s": ev["window_s"]}


def check_write_refusals(w: dict) -> Finding:
    seen = w["oom_errors"]
    counted = (f"{seen} 'OOM command not allowed' replies sent to clients since start, "
               f"{w['oom_in_window']} in the last {w['window_s']:g} s" if w["errorstats_available"]
               else "this Redis has no INFO errorstats (< 6.2): refusals sent to clients cannot be counted")
    data = {**w, "refusing": bool(w["writes_refused_now"] or (w["oom_in_window"] or 0) > 0)}
    if w["writes_refused_now"]:
        why = ("noeviction" if w["policy"] == "noeviction"
               else f"{w['policy']} with no key carrying a TTL")
        return Finding("critical", f"writes are refused now: used_memory {mib(w['used_memory'])} MiB is over "
                                   f"maxmemory {mib(w['maxmemory'])} MiB and {why} cannot evict; {counted}", data)
    if (w["oom_in_window"] or 0) > 0:
        return Finding("critical", f"clients are getting OOM refusals: {counted}", data)
    if seen:
        return Finding("warn", f"writes are accepted now, but {counted}", data)
    return Finding("ok", f"writes are accepted (memory under maxmemory or evictable); {counted}", data)


def ttl_summary(sample: pd.DataFrame) -> dict:
    n = int(len(sample))
    no_ttl = int((sample["ttl_s"] == -1).sum()) if n else 0
    no_ttl_bytes = int(sample.loc[sample["ttl_s"] == -1, "memory_bytes"].sum()) if n else 0
    total_bytes = int(sample["memory_bytes"].sum()) if n else 0
    return {"sampled": n, "without_ttl": no_ttl, "share_pct": round(100.0 * no_ttl / n, 1) if n else 0.0,
            "bytes_without_ttl": no_ttl_bytes, "sampled_bytes": total_bytes}


def check_ttl(s: dict, warn_pct: float, limit: int) -> Finding:
    data = {**s, "warn_pct": warn_pct, "sample_limit": limit, "many": s["sampled"] > 0 and s["share_pct"] >= warn_pct}
    if not s["sampled"]:
        return Finding("ok", "no key to sample: the database is empty", data)
    text = (f"{s['without_ttl']} of {s['sampled']} sampled keys ({s['share_pct']:g}%) have no TTL, holding "
            f"{mib(s['bytes_without_ttl'])} of {mib(s['sampled_bytes'])} MiB sampled")
    if data["many"]:
        return Finding("warn", f"{text}: they never expire and, under noeviction or volatile-*, never leave", data)
    return Finding("ok", text, data)


def prefixes(sample: pd.DataFrame) -> pd.DataFrame:
    """Memory by key prefix over the sample, largest first (``kib`` for the chart)."""
    if not len(sample):
        return pd.DataFrame(columns=["prefix", "keys", "memory_bytes", "kib", "without_ttl"])
    g = sample.assign(no_ttl=sample["ttl_s"] == -1).groupby("prefix").agg(
        keys=("key", "size"), memory_bytes=("memory_bytes", "sum"), without_ttl=("no_ttl", "sum"))
    g = g.reset_index().sort_values("memory_bytes", ascending=False, ignore_index=True)
    g["kib"] = (g["memory_bytes"] / 1024).round(1)
    g["without_ttl"] = g["without_ttl"].astype(int)
    return g[["prefix", "keys", "memory_bytes", "kib", "without_ttl"]]


def check_prefixes(table: pd.DataFrame) -> Finding:
    if not len(table):
        return Finding("ok", "no key sampled", {"prefixes": []})
    top = table.iloc[0]
    share = 100.0 * top["memory_bytes"] / max(int(table["memory_bytes"].sum()), 1)
    return Finding("ok", f"largest prefix in the sample: {top['prefix']} with {int(top['keys'])} keys, "
                         f"{top['kib']:g} KiB ({share:.0f}% of sampled memory)",
                   {"prefixes": table.head(20).to_dict("records")})


@reads(Step.MEMORY, Step.POLICY, Step.EVICTIONS, Step.REFUSALS, Step.NO_TTL)
def diagnose(findings: list[Finding], params) -> Diagnosis:
    """Name the mechanism: refusals under noeviction, evictions under LRU, memory pinned by no-TTL keys."""
    f = by_check(findings)
    mem, pol, ev, wr, ttl = (f.get(k) for k in (Step.MEMORY, Step.POLICY, Step.EVICTIONS,
                                                 Step.REFUSALS, Step.NO_TTL))
    causes, why = [], []
    reached = bool(mem and mem.data.get("at_limit"))
    refusing = bool(wr and wr.data.get("refusing"))
    if reached or (wr and wr.data.get("writes_refused_now")):
        causes.append("maxmemory-reached")
    if pol and pol.data.get("noeviction") and (reached or refusing):
        causes.append("noeviction-policy")
    if ev and ev.data.get("high"):
        causes.append("high-evictions")
    if ttl and ttl.data.get("many") and causes:
        causes.append("keys-without-ttl")
    if refusing:
        w = wr.data
        how = "noeviction" if w["policy"] == "noeviction" else f"{w['policy']} (nothing evictable)"
        pct = mem.data["used_pct"] if mem else round(100.0 * w["used_memory"] / max(w["maxmemory"], 1), 1)
        why.append(f"Writes refused: 'OOM command not allowed' under {how} at {pct:g}% of maxmemory "
                   f"({mib(w['maxmemory'])} MiB).")
    elif "maxmemory-reached" in causes and mem:
        d = mem.data
        if d["maxmemory"]:
            how = ("writes will be refused as soon as a command needs more memory"
                   if d["policy"] == "noeviction" else "Redis makes room by evicting keys")
            earlier = (wr.data.get("oom_errors") or 0) if wr else 0
            if earlier and d["policy"] == "noeviction":  # just under the limit now, refusing moments ago
                how += f"; it has already refused {earlier} writes with 'OOM command not allowed' since start"
            why.append(f"Memory at {d['used_pct']:g}% of maxmemory ({mib(d['limit_bytes'])} MiB) under "
                       f"{d['policy']}: {how}.")
        else:
            why.append(f"No maxmemory set: Redis at {d['used_pct']:g}% of the {d['limit_source']} grows until "
                       "the kernel kills it (no eviction, no refusal).")
    if "high-evictions" in causes:
        why.append(f"Evictions: {ev.summary}.")
    if "keys-without-ttl" in causes:
        why.append(f"Memory pinned by keys that never expire: {ttl.summary}.")
    if not causes:
        return Diagnosis([], "Redis memory full not confirmed: " + measured(
            f, (Step.MEMORY, Step.REFUSALS, Step.EVICTIONS)))
    advice = (" Recommended: raise-maxmemory (if the host has room) or flush-cache (drops every key of this "
              "database); then give cache keys a TTL and prefer allkeys-lru for a cache.")
    return Diagnosis(causes, "Redis memory full. " + " ".join(why) + advice)
