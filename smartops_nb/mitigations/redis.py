"""Redis mitigations: flush the cache database (FLUSHDB) and raise maxmemory (CONFIG SET).

Both act on the database/instance named by the run's ``redis_url`` through a client the caller
opened. Each returns before/after evidence; ``CONFIG SET`` is not persisted to redis.conf or the
compose file, which a human must update (the runbook says so).
"""
from __future__ import annotations

import re

from smartops_nb.actions import Action
from smartops_nb.probes import redis as redis_probe

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000 ** 2, "mb": 1024 ** 2, "g": 1000 ** 3, "gb": 1024 ** 3}


def parse_memory(value: str | int) -> int:
    """Redis memory notation to bytes, as redis.conf reads it (``1k`` = 1000, ``1kb`` = 1024)."""
    m = re.fullmatch(r"\s*(\d+)\s*([kmg]?b?)\s*", str(value).lower())
    if not m:
        raise ValueError(f"not a Redis memory size: {value!r} (e.g. 256mb)")
    return int(m.group(1)) * _UNITS[m.group(2)]


def _state(r) -> dict:
    mem = redis_probe.memory_info(r)
    return {"dbsize": int(r.dbsize()), "used_memory": mem["used_memory"], "maxmemory": mem["maxmemory"],
            "policy": mem["maxmemory_policy"]}


def flush_cache(r, url: str) -> Action:
    def preview() -> dict:
        s = _state(r)
        return {"would_delete_keys": s["dbsize"], **s}

    def execute() -> dict:
        before = _state(r)
        # ASYNC: the keys leave the keyspace at once and their memory is freed in the background, so
        # a big database cannot outlast the socket timeout and be recorded as failed once gone
        r.flushdb(asynchronous=True)
        return {"command": "FLUSHDB ASYNC", "asynchronous": True, "before": before, "after": _state(r),
                "note": "memory is freed by a background thread: used_memory may take a moment to drop"}

    return Action(
        name="flush-cache",
        target=f"redis {redis_probe.target(url)}",
        description="FLUSHDB ASYNC: delete every key of this database (a cache refills from the source of truth)",
        execute=execute, preview=preview,
    )


def raise_maxmemory(r, url: str, new_maxmemory: str) -> Action:
    def plan() -> dict:
        new = parse_memory(new_maxmemory)
        current = int(r.config_get("maxmemory").get("maxmemory", 0))
        if current and new <= current:
            raise ValueError(f"new_maxmemory {new_maxmemory!r} ({new} bytes) is not above the current "
                             f"maxmemory ({current} bytes)")
        return {"current_maxmemory": current, "new_maxmemory": new, "new_value": new_maxmemory}

    def execute() -> dict:
        p = plan()
        before = _state(r)
        r.config_set("maxmemory", str(p["new_maxmemory"]))
        after = _state(r)
        return {**p, "before": before, "after": after,
                "config_get": r.config_get("maxmemory").get("maxmemory"),
                "persisted": False, "note": "CONFIG SET is lost on restart: update redis.conf / docker-compose"}

    return Action(
        name="raise-maxmemory",
        target=f"redis {redis_probe.target(url)}",
        description=f"CONFIG SET maxmemory {new_maxmemory} (runtime only, not persisted)",
        execute=execute, preview=plan,
    )
