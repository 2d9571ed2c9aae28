"""Cache mitigations: warm the API's cache by requesting its hot URLs (the seed's curl warm-up).

Before/after evidence is Redis's own hit rate (keyspace_hits/misses deltas): over the warm-up pass
(cold keys miss) and over a second, verification pass (warmed keys should hit). An API that does
not read the cache shows no Redis lookups at all, and the action says so instead of claiming success.
"""
from __future__ import annotations

from ..actions import Action
from .. import redact
from ..probes import http
from ..probes import redis as redis_probe


def _pass(api_url: str, paths: list[str], r, timeout: float) -> dict:
    before = redis_probe.cache_counters(r)
    answers = [http.get(api_url.rstrip("/") + p, timeout=timeout) for p in paths]
    after = redis_probe.cache_counters(r)
    hits = after["keyspace_hits"] - before["keyspace_hits"]
    misses = after["keyspace_misses"] - before["keyspace_misses"]
    n = hits + misses
    return {"hits": hits, "misses": misses, "hit_rate": round(hits / n, 3) if n else None,
            "responses": [{"url": a["url"], "status": a["status"], "latency_ms": a["latency_ms"]} for a in answers]}


def warm_cache(api_url: str, redis_url: str, paths: list[str], timeout: float = 10.0) -> Action:
    def preview() -> dict:
        r = redis_probe.connect(redis_url)
        return {"urls": paths, "keyspace": redis_probe.keyspace(r), **redis_probe.cache_counters(r)}

    def execute() -> dict:
        r = redis_probe.connect(redis_url)
        warm = _pass(api_url, paths, r, timeout)
        check = _pass(api_url, paths, r, timeout)
        failed = [x["url"] for x in warm["responses"] if x["status"] != 200]
        if failed:
            raise RuntimeError(f"warm-up requests failed: {', '.join(failed)}")
        if check["hit_rate"] is None:
            raise RuntimeError("Redis saw no lookup for the warm-up URLs: the API is not reading the cache, "
                               "warming cannot help")
        return {"hit_rate_before": warm["hit_rate"], "hit_rate_after": check["hit_rate"],
                "warm_pass": warm, "verification_pass": check, "keyspace_after": redis_probe.keyspace(r)}

    return Action(name="warm-cache", target=f"API {redact.mask_url(api_url)}: {len(paths)} URLs",
                  description=f"GET {', '.join(paths)} to load them into the cache", execute=execute,
                  preview=preview)
