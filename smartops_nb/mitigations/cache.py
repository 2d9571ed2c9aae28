"""Cache mitigations: warm the API's cache by requesting its hot URLs (the seed's curl warm-up).

Before/after evidence is Redis's own hit rate (keyspace_hits/misses deltas): over the warm-up pass
(cold keys miss) and over the verification requests (warmed keys should hit), each URL checked right
after its own warm-up. Those counters are the whole server's, so users browsing during the pass count
too; where the API says in its answer
whether it was served from the cache (a JSON ``"cached": true|false`` field, as SmartAmazon's does),
each URL's own answer is kept as ``from_cache`` - the evidence that does not depend on other traffic.
An API that does not read the cache shows no Redis lookups at all, and the action says so instead of
claiming success.
"""
from __future__ import annotations

import re

from smartops_nb.actions import Action
from smartops_nb import redact
from smartops_nb.probes import http
from smartops_nb.probes import redis as redis_probe


_CACHED_FIELD = re.compile(r'"cached"\s*:\s*(true|false)')


def _from_cache(body: str) -> bool | None:
    """The API's own word on whether this answer came from the cache; None when it does not say."""
    m = _CACHED_FIELD.search(body or "")
    return None if m is None else m.group(1) == "true"


def _counted_get(url: str, r, timeout: float) -> dict:
    """One GET with Redis's lookup counters read around it (the whole server's: other traffic counts too)."""
    before = redis_probe.cache_counters(r)
    answer = http.get(url, timeout=timeout)
    after = redis_probe.cache_counters(r)
    return {"hits": after["keyspace_hits"] - before["keyspace_hits"],
            "misses": after["keyspace_misses"] - before["keyspace_misses"],
            "response": {"url": answer["url"], "status": answer["status"], "latency_ms": answer["latency_ms"],
                         "from_cache": _from_cache(answer["body"])}}


def _pass_summary(gets: list[dict]) -> dict:
    hits, misses = sum(g["hits"] for g in gets), sum(g["misses"] for g in gets)
    n = hits + misses
    return {"hits": hits, "misses": misses, "hit_rate": round(hits / n, 3) if n else None,
            "responses": [g["response"] for g in gets]}


def _warm_and_check(api_url: str, paths: list[str], r, timeout: float) -> tuple[dict, dict]:
    """Each URL warmed, then asked again at once: the check follows its own warm-up by one request,
    not by the whole list, so a short TTL (or a slow neighbour URL) does not expire it in between."""
    warm, check = [], []
    for p in paths:
        url = api_url.rstrip("/") + p
        warm.append(_counted_get(url, r, timeout))
        check.append(_counted_get(url, r, timeout))
    return _pass_summary(warm), _pass_summary(check)


def warm_cache(api_url: str, redis_url: str, paths: list[str], timeout: float = 10.0) -> Action:
    def preview() -> dict:
        r = redis_probe.connect(redis_url)
        return {"urls": paths, "keyspace": redis_probe.keyspace(r), **redis_probe.cache_counters(r)}

    def execute() -> dict:
        r = redis_probe.connect(redis_url)
        warm, check = _warm_and_check(api_url, paths, r, timeout)
        failed = [x["url"] for x in warm["responses"] if x["status"] != 200]
        if failed:
            raise RuntimeError(f"warm-up requests failed: {', '.join(failed)}")
        if check["hit_rate"] is None:
            raise RuntimeError("Redis saw no lookup for the warm-up URLs: the API is not reading the cache, "
                               "warming cannot help")
        return {"hit_rate_before": warm["hit_rate"], "hit_rate_after": check["hit_rate"],
                "from_cache_after": {x["url"]: x["from_cache"] for x in check["responses"]},
                "warm_pass": warm, "verification_pass": check, "keyspace_after": redis_probe.keyspace(r)}

    return Action(name="warm-cache", target=f"API {redact.mask_url(api_url)}: {len(paths)} URLs",
                  description=f"GET {', '.join(paths)} to load them into the cache", execute=execute,
                  preview=preview)
