"""The runbooks SmartOps knows: ids, titles, severities, cause codes and mitigations.

Ids, cause codes and action names are a contract with alerting and with the archive, so they
live here once; notebooks and checks refer to them, never to their own copies.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .contract import NOTEBOOKS_ENV
from .params import COMMON, Param, shared

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"


@dataclass(frozen=True)
class Runbook:
    id: str
    title: str
    severity: str
    notebook: str
    causes: tuple[str, ...]
    actions: tuple[str, ...]
    permanent_fixes: tuple[str, ...] = field(default=())
    #: the runbook's own parameters, after the common ones (declared once: see params.py)
    own_parameters: tuple[Param, ...] = field(default=())

    @property
    def path(self) -> Path:
        return notebook_dir() / self.notebook

    @property
    def parameters(self) -> dict[str, Param]:
        """Every parameter of this runbook in notebook order: the common ones, then its own."""
        out = {p.name: p for p in COMMON}
        out["severity"] = out["severity"].with_default(self.severity)
        out.update((p.name, p) for p in self.own_parameters)
        return out

    def defaults(self) -> dict[str, object]:
        return {name: p.default for name, p in self.parameters.items()}


RUNBOOKS: dict[str, Runbook] = {
    rb.id: rb
    for rb in (
        Runbook(
            "api-down", "API Service Down", "P1", "api_down.ipynb",
            ("container-crashed", "out-of-memory", "database-unreachable"),
            ("restart-api", "restart-database", "scale-api"),
            ("Add a liveness probe and restart policy", "Set memory limits from measured peak usage",
             "Alert on database reachability from the API"),
            own_parameters=(
                shared("health_timeout_s"),
                Param("latency_warn_ms", float, 2000.0, "a slower /health answer is a warning, ms"),
                shared("log_lines", 100, "API log lines read (the seed's --tail 100)"),
                shared("memory_warn_pct", 90.0, "the API's memory use against its limit that is a warning, %"),
                shared("scale_replicas", 3, "scale-api target replicas (the seed's --replicas 3)"),
                Param("settle_seconds", float, 30.0, "wait after a restart before checking health again, s"),
                shared("prometheus_url"), shared("lookback"),
            ),
        ),
        Runbook(
            "high-latency", "High API Latency", "P2", "high_latency.ipynb",
            ("slow-queries", "cache-misses", "high-load"),
            ("create-index", "warm-cache", "scale-api"),
            ("Add the missing index in a migration", "Review cache TTLs and warm-up on deploy",
             "Autoscale the API on request rate"),
            own_parameters=(
                Param("sample_seconds", float, 10.0, "window over which /metrics and Redis are sampled, s"),
                Param("sample_interval", float, 1.0, "seconds between samples"),
                Param("latency_p95_threshold_s", float, 2.0, "p95 above this is slow (the seed's > 2 seconds)"),
                Param("db_endpoints", list, ["/api/search", "/api/categories"], "endpoints backed by the database"),
                Param("high_load_rps", float, 100.0, "request rate above which load itself is a cause"),
                Param("cache_hit_rate_min", float, 0.8, "Redis hit rate below this is cache misses"),
                Param("cache_min_lookups", int, 10, "fewer lookups in the window: hit rate not judged"),
                Param("redis_pings", int, 5, "PINGs timed for Redis latency"),
                Param("redis_ping_warn_ms", float, 10.0, "a slower PING is a warning, ms"),
                Param("expected_index", str,
                      "CREATE INDEX IF NOT EXISTS idx_products_category_rating ON products(category, rating)",
                      "the index create-index builds (the seed's DDL)"),
                Param("warm_urls", list, ["/api/search?q=protein", "/api/categories"],
                      "URLs warm-cache requests (the seed's curl lines)"),
                shared("scale_replicas", 3, "scale-api target replicas"),
                shared("prometheus_url"), shared("lookback"),
            ),
        ),
        Runbook(
            "db-pool-exhausted", "Database Connection Pool Exhausted", "P1", "db_pool_exhausted.ipynb",
            ("connections-near-limit", "idle-connection-leak"),
            ("terminate-idle-connections",),
            ("Find and fix the code path that does not return connections to the pool",
             "Set idle_session_timeout / idle_in_transaction_session_timeout",
             "Size the application pool below max_connections with headroom for operators",
             "Give the monitoring role pg_use_reserved_connections"),
            own_parameters=(
                Param("idle_minutes", float, 5.0, "idle age that counts as a leak (the seed's 5 minutes)"),
                Param("connections_warn_pct", float, 90.0, "slots in use against max_connections that is critical, %"),
                shared("prometheus_url"), shared("lookback"),
            ),
        ),
        Runbook(
            "disk-full", "Disk Space Full", "P1", "disk_full.ipynb",
            ("disk-nearly-full", "old-logs", "old-backups", "docker-reclaimable"),
            ("delete-old-logs", "delete-old-backups", "prune-docker", "prune-docker-volumes"),
            ("Rotate logs with a retention policy", "Expire backups automatically",
             "Alert on disk usage before it is full"),
            own_parameters=(
                Param("disk_paths", list, ["/"], "mount points (or paths on them) to check"),
                Param("disk_warn_pct", float, 90.0, "used space that is nearly full, %"),
                Param("log_dirs", list, ["/var/log"], "folders searched for old logs"),
                Param("log_max_age_days", float, 30.0, "logs older than this are old (the seed's -mtime +30)"),
                Param("log_pattern", str, "*.log", "file name pattern of logs"),
                Param("backup_dirs", list, ["/var/backups/smartamazon"], "folders searched for old backups"),
                Param("backup_max_age_days", float, 30.0, "backups older than this are old"),
                Param("backup_pattern", str, "*.sql.gz", "file name pattern of backups"),
                Param("largest_n", int, 20, "largest folders and files listed"),
                Param("walk_max_entries", int, 200000, "bound on the directory walk (entries)"),
                Param("walk_time_budget_s", float, 20.0, "bound on the directory walk (seconds)"),
            ),
        ),
        Runbook(
            "redis-memory-full", "Redis Memory Full", "P2", "redis_memory_full.ipynb",
            ("maxmemory-reached", "noeviction-policy", "high-evictions", "keys-without-ttl"),
            ("flush-cache", "raise-maxmemory"),
            ("Give every cache key a TTL", "Use an LRU eviction policy for cache instances",
             "Size maxmemory from measured working set"),
            own_parameters=(
                shared("memory_warn_pct", 90.0, "used_memory against maxmemory that is a warning, %"),
                Param("sample_keys", int, 1000, "keys sampled with SCAN (never KEYS *)"),
                Param("eviction_window_s", float, 2.0, "window over which evictions are counted, s"),
                Param("evicted_keys_warn", int, 1000, "evictions since start that are high"),
                Param("no_ttl_warn_pct", float, 50.0, "sampled keys without a TTL that is a warning, %"),
                Param("new_maxmemory", str, "256mb", "raise-maxmemory target"),
            ),
        ),
        Runbook(
            "failed-deployment", "Failed Deployment", "P2", "failed_deployment.ipynb",
            ("crash-on-start", "image-unavailable", "health-check-failing"),
            ("rollback",),
            ("Gate deployments on health checks (canary)", "Verify images exist before rollout"),
            own_parameters=(
                shared("health_timeout_s"),
                shared("log_lines", 200, "API log lines read (the seed's --tail 200)"),
                Param("startup_window_s", float, 300.0, "an exit this soon after start is a crash on start, s"),
                Param("rollback_wait_s", float, 30.0, "wait for the previous version to run after rollback, s"),
                Param("release_image", str, "", "the image the deploy meant to run, where the platform keeps no "
                      "record of it (plain Docker); Compose and Kubernetes read their own"),
                Param("deploy_window_s", float, 3600.0, "how far back the engine's events are read for the "
                      "deploy (plain Docker), s"),
            ),
        ),
    )
}


def notebook_dir() -> Path:
    import os

    return Path(os.environ.get(NOTEBOOKS_ENV, NOTEBOOK_DIR))


def get(runbook_id: str) -> Runbook:
    try:
        return RUNBOOKS[runbook_id]
    except KeyError:
        raise KeyError(f"unknown runbook {runbook_id!r} (known: {', '.join(RUNBOOKS)})") from None


def available() -> list[Runbook]:
    """Runbooks whose notebook exists in this installation."""
    return [rb for rb in RUNBOOKS.values() if rb.path.exists()]
