"""The runbooks SmartOps knows: ids, titles, severities, cause codes and mitigations.

Ids, cause codes and action names are a contract with alerting and with the archive, so they
live here once; notebooks and checks refer to them, never to their own copies.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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

    @property
    def path(self) -> Path:
        return notebook_dir() / self.notebook


RUNBOOKS: dict[str, Runbook] = {
    rb.id: rb
    for rb in (
        Runbook(
            "api-down", "API Service Down", "P1", "api_down.ipynb",
            ("container-crashed", "out-of-memory", "database-unreachable"),
            ("restart-api", "restart-database", "scale-api"),
            ("Add a liveness probe and restart policy", "Set memory limits from measured peak usage",
             "Alert on database reachability from the API"),
        ),
        Runbook(
            "high-latency", "High API Latency", "P2", "high_latency.ipynb",
            ("slow-queries", "cache-misses", "high-load"),
            ("create-index", "warm-cache", "scale-api"),
            ("Add the missing index in a migration", "Review cache TTLs and warm-up on deploy",
             "Autoscale the API on request rate"),
        ),
        Runbook(
            "db-pool-exhausted", "Database Connection Pool Exhausted", "P1", "db_pool_exhausted.ipynb",
            ("connections-near-limit", "idle-connection-leak"),
            ("terminate-idle-connections",),
            ("Find and fix the code path that does not return connections to the pool",
             "Set idle_session_timeout / idle_in_transaction_session_timeout",
             "Size the application pool below max_connections with headroom for operators",
             "Give the monitoring role pg_use_reserved_connections"),
        ),
        Runbook(
            "disk-full", "Disk Space Full", "P1", "disk_full.ipynb",
            ("disk-nearly-full", "old-logs", "old-backups", "docker-reclaimable"),
            ("delete-old-logs", "delete-old-backups", "prune-docker", "prune-docker-volumes"),
            ("Rotate logs with a retention policy", "Expire backups automatically",
             "Alert on disk usage before it is full"),
        ),
        Runbook(
            "redis-memory-full", "Redis Memory Full", "P2", "redis_memory_full.ipynb",
            ("maxmemory-reached", "noeviction-policy", "high-evictions", "keys-without-ttl"),
            ("flush-cache", "raise-maxmemory"),
            ("Give every cache key a TTL", "Use an LRU eviction policy for cache instances",
             "Size maxmemory from measured working set"),
        ),
        Runbook(
            "failed-deployment", "Failed Deployment", "P2", "failed_deployment.ipynb",
            ("crash-on-start", "image-unavailable", "health-check-failing"),
            ("rollback",),
            ("Gate deployments on health checks (canary)", "Verify images exist before rollout"),
        ),
    )
}


def notebook_dir() -> Path:
    import os

    return Path(os.environ.get("SMARTOPS_NOTEBOOKS", NOTEBOOK_DIR))


def get(runbook_id: str) -> Runbook:
    try:
        return RUNBOOKS[runbook_id]
    except KeyError:
        raise KeyError(f"unknown runbook {runbook_id!r} (known: {', '.join(RUNBOOKS)})") from None


def available() -> list[Runbook]:
    """Runbooks whose notebook exists in this installation."""
    return [rb for rb in RUNBOOKS.values() if rb.path.exists()]
