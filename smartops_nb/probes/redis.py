"""Read Redis: INFO sections, eviction and OOM counters, a bounded key sample, the memory ceiling.

Probes take a client they did not open and never close it. Every call goes through a client made
by :func:`connect`, whose socket timeouts bound every network call. Nothing here writes: keys are
sampled with ``SCAN`` (never ``KEYS *``), and whether writes are refused for lack of memory is
read from ``INFO errorstats`` rather than tested with a write (see
:func:`smartops_nb.checks.redis_memory.write_refusals`).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from smartops_nb import redact
from smartops_nb.support.reasons import one_line

SOCKET_TIMEOUT_S = 3.0
NO_PREFIX = "(no prefix)"


def connect(url: str, timeout: float = SOCKET_TIMEOUT_S):
    """A Redis client for ``url`` with connect and read timeouts (no I/O until first command)."""
    import redis

    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


def target(url: str) -> str:
    """``redis://host:port/db`` fit for display: credentials masked."""
    return redact.safe_dsn(url)


def _int(v: Any, default: int = 0) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def memory_info(r) -> dict[str, Any]:
    """INFO memory, the numbers a memory-full investigation needs (bytes unless said otherwise)."""
    info = r.info("memory")
    keys = ("used_memory", "used_memory_rss", "used_memory_peak", "used_memory_dataset",
            "used_memory_overhead", "maxmemory", "total_system_memory")
    out: dict[str, Any] = {k: _int(info.get(k)) for k in keys}
    out["maxmemory_policy"] = str(info.get("maxmemory_policy", "unknown"))
    out["mem_fragmentation_ratio"] = float(info.get("mem_fragmentation_ratio") or 0)
    return out


def keyspace(r) -> dict[str, dict[str, int]]:
    """INFO keyspace: ``{"db0": {"keys": N, "expires": M}}`` (keys with a TTL are ``expires``)."""
    return {db: {"keys": _int(v.get("keys")), "expires": _int(v.get("expires"))}
            for db, v in r.info("keyspace").items() if isinstance(v, dict)}


def _counters(r) -> dict[str, Any]:
    stats = r.info("stats")
    try:
        errors = r.info("errorstats")  # Redis >= 6.2
    except Exception:
        errors = None
    oom = None if errors is None else _int((errors.get("errorstat_OOM") or {}).get("count"))
    return {"evicted_keys": _int(stats.get("evicted_keys")), "expired_keys": _int(stats.get("expired_keys")),
            "total_error_replies": _int(stats.get("total_error_replies")), "oom_errors": oom,
            "uptime_s": _int(r.info("server").get("uptime_in_seconds")), "at": time.monotonic()}


def counters_over(r, window_s: float) -> dict[str, Any]:
    """Eviction and OOM counters now and ``window_s`` seconds later, with their deltas.

    The totals run since the server started (or since ``CONFIG RESETSTAT``); the deltas say
    whether it is happening *now*.
    """
    first = _counters(r)
    time.sleep(max(0.0, float(window_s)))
    last = _counters(r)
    span = max(last["at"] - first["at"], 1e-6)
    oom_delta = None if first["oom_errors"] is None or last["oom_errors"] is None else (
        last["oom_errors"] - first["oom_errors"])
    return {"evicted_keys": last["evicted_keys"], "evicted_in_window": last["evicted_keys"] - first["evicted_keys"],
            "evictions_per_s": round((last["evicted_keys"] - first["evicted_keys"]) / span, 2),
            "oom_errors": last["oom_errors"], "oom_in_window": oom_delta,
            "expired_keys": last["expired_keys"], "total_error_replies": last["total_error_replies"],
            "uptime_s": last["uptime_s"], "window_s": round(span, 2)}


def prefix_of(key: str) -> str:
    """``search:protein`` → ``search:``; a key without ``:`` falls under ``(no prefix)``."""
    head, sep, _ = key.partition(":")
    return f"{head}:" if sep else NO_PREFIX


def sample_keys(r, limit: int, batch: int = 500) -> pd.DataFrame:
    """Up to ``limit`` keys found by ``SCAN`` (bounded; never ``KEYS *``) with TTL and MEMORY USAGE.

    ``ttl_s`` is -1 for a key without TTL; a key that vanished between SCAN and TTL (-2) is dropped.
    """
    keys: list[bytes] = []
    cursor = 0
    limit = max(0, int(limit))
    while len(keys) < limit:
        cursor, found = r.scan(cursor=cursor, count=min(batch, limit))
        keys.extend(found[: limit - len(keys)])
        if cursor == 0:
            break
    rows = []
    for i in range(0, len(keys), batch):
        chunk = keys[i:i + batch]
        pipe = r.pipeline(transaction=False)
        for k in chunk:
            pipe.ttl(k)
            pipe.memory_usage(k)
        replies = pipe.execute(raise_on_error=False)
        for j, k in enumerate(chunk):
            ttl, size = replies[2 * j], replies[2 * j + 1]
            if isinstance(ttl, Exception) or ttl == -2:
                continue
            name = k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k)
            rows.append({"key": name, "prefix": prefix_of(name), "ttl_s": int(ttl),
                         "memory_bytes": 0 if isinstance(size, Exception) or size is None else int(size)})
    return pd.DataFrame(rows, columns=["key", "prefix", "ttl_s", "memory_bytes"])


def host_memory_bytes(meminfo: str | Path = "/proc/meminfo") -> int:
    """MemTotal of this host, in bytes."""
    for line in Path(meminfo).read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no MemTotal in {meminfo}")


def memory_ceiling(mem: dict[str, Any], platform_factory: Callable[[], Any] | None = None,
                   workload: str = "") -> dict[str, Any]:
    """What Redis's memory should be judged against.

    ``maxmemory`` when set; with ``maxmemory 0`` (no limit, the Redis default) Redis never evicts
    and never refuses, it grows until the kernel kills it, so the ceiling is the container's memory
    limit (from the platform, when reachable and one is set) or else the host's memory.
    """
    if mem.get("maxmemory"):
        return {"limit_bytes": int(mem["maxmemory"]), "source": "maxmemory", "note": ""}
    note = ""
    if platform_factory is not None and workload:
        try:
            state = platform_factory().state(workload)
            if state.exists and state.memory_limit_bytes:
                return {"limit_bytes": int(state.memory_limit_bytes), "source": f"container {workload} memory limit",
                        "note": "maxmemory is 0 (no limit)"}
            note = f"container {workload}: {'no memory limit set' if state.exists else 'not found'}"
        except Exception as e:  # no engine here: fall back to the host
            note = f"platform not reachable ({redact.scrub(one_line(e, typed=False))})"
    return {"limit_bytes": host_memory_bytes(), "source": "host memory (/proc/meminfo)",
            "note": "; ".join(x for x in ("maxmemory is 0 (no limit)", note) if x)}


# -- latency and cache hit rate (high-latency runbook) ------------------------------------------
def cache_counters(r) -> dict[str, int]:
    """INFO stats ``keyspace_hits`` / ``keyspace_misses`` (totals since start or CONFIG RESETSTAT)."""
    stats = r.info("stats")
    return {"keyspace_hits": _int(stats.get("keyspace_hits")), "keyspace_misses": _int(stats.get("keyspace_misses"))}


def sample_latency_and_hits(r, seconds: float = 10.0, interval: float = 1.0, pings: int = 5) -> pd.DataFrame:
    """Every ``interval`` s for ``seconds`` s: ``pings`` PINGs timed (ms) and the keyspace counters.

    One row per PING: ``t_s``, ``ping_ms`` (NaN when it failed), ``error``, and the
    ``keyspace_hits`` / ``keyspace_misses`` read at that tick. The client's socket timeout bounds
    each call; a failing PING is recorded, not raised, but a failing INFO raises.
    """
    rows = []
    start = time.monotonic()
    while True:
        counters = cache_counters(r)
        for _ in range(max(1, int(pings))):
            t0 = time.monotonic()
            try:
                r.ping()
                ms, err = (time.monotonic() - t0) * 1000, ""
            except Exception as e:
                ms, err = float("nan"), redact.scrub(one_line(e))
            rows.append({"t_s": round(t0 - start, 3), "ping_ms": round(ms, 3), "error": err, **counters})
        if time.monotonic() - start >= seconds:
            break
        time.sleep(max(0.0, min(interval, seconds - (time.monotonic() - start))))
    rows.append({"t_s": round(time.monotonic() - start, 3), "ping_ms": float("nan"), "error": "",
                 **cache_counters(r)})
    return pd.DataFrame(rows)
