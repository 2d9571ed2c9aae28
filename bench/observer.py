#!/usr/bin/env python
"""What a runbook costs the system it inspects, measured against the sandbox while it runs.

    python bench/observer.py [--runbooks db-pool-exhausted,...] [--mode investigate]

During an outage the inspected system is the one under pressure, so each runbook's footprint is
measured and held to bounds (the README's table):

* **PostgreSQL**: the most connections the runbook held at once (sampled every 20 ms from
  ``pg_stat_activity``, ``application_name`` ``smartops:*``) and how many it opened; statements it
  ran and rows it wrote (``pg_stat_statements`` of the runbook's role, reset before the run);
* **Redis**: commands by name (``INFO commandstats`` before and after); any O(N) command (``KEYS``,
  ``FLUSHALL``...) is flagged, ``SCAN`` calls are counted;
* **HTTP**: requests the runbook sent to the API (the API's own request counter), per second of run;
* **memory**: the kernel's peak RSS (``VmHWM`` of its process).

Runs each runbook once on a warm kernel against a healthy sandbox of its own (no other traffic), with
the bench's short sampling windows. Prints one row per runbook and the bounds beside them.
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from benchlib import kernel_pid, memory_mib  # noqa: E402

#: The bounds (investigate mode); the README quotes them.
BOUNDS = {"pg_max_connections": 1, "pg_statements": 20, "pg_rows_written": 0, "redis_on_commands": 0}
O_N_COMMANDS = {"keys", "flushall", "flushdb", "smembers", "hgetall", "lrange", "sort", "debug"}
ROLE = "smartops"   # the sandbox's monitoring role, the one runbooks log in as


class ConnectionSampler(threading.Thread):
    """Samples the runbook's PostgreSQL sessions (``application_name`` ``smartops:*``) and, given the
    kernel's pid, its peak RSS, until stopped (the kernel is shut down when its run ends)."""

    def __init__(self, admin_dsn: str, interval: float = 0.02, kernel_pid: int | None = None):
        super().__init__(daemon=True)
        self.admin_dsn, self.interval, self.kernel_pid = admin_dsn, interval, kernel_pid
        self.max_at_once, self.pids, self.peak_rss_mib = 0, set(), None
        self._halt = threading.Event()

    def run(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_dsn, autocommit=True, connect_timeout=5,
                             application_name="bench-observer") as c:
            while not self._halt.is_set():
                pids = [r[0] for r in c.execute("SELECT pid FROM pg_stat_activity WHERE application_name "
                                                "LIKE 'smartops:%'").fetchall()]
                self.max_at_once = max(self.max_at_once, len(pids))
                self.pids.update(pids)
                rss = peak_rss_mib(self.kernel_pid) if self.kernel_pid else None
                if rss is not None:
                    self.peak_rss_mib = max(self.peak_rss_mib or 0.0, rss)
                self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def pg_reset(admin_dsn: str) -> None:
    import psycopg

    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5) as c:
        c.execute("SELECT pg_stat_statements_reset()")


def pg_statements(admin_dsn: str) -> dict[str, int]:
    """Statements the runbook's role ran since the reset, and the rows its writing statements touched."""
    import psycopg

    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5) as c:
        rows = c.execute("SELECT s.query, s.calls, s.rows FROM pg_stat_statements s JOIN pg_roles r "
                         "ON r.oid = s.userid WHERE r.rolname = %s", (ROLE,)).fetchall()
    writing = re.compile(r"^\s*(insert|update|delete|merge|create|alter|drop|truncate|copy)\b", re.I)
    return {"statements": sum(r[1] for r in rows),
            "rows_written": sum(r[2] for r in rows if writing.match(r[0] or "")),
            "writing_statements": [r[0] for r in rows if writing.match(r[0] or "")]}


def redis_commands(url: str) -> dict[str, int]:
    import redis

    r = redis.Redis.from_url(url, socket_timeout=5)
    try:
        return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in r.info("commandstats").items()}
    finally:
        r.close()


def api_requests(api_url: str) -> float:
    with urllib.request.urlopen(api_url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("http_request_duration_seconds_count"))


def peak_rss_mib(pid: int) -> float | None:
    """A process's peak resident memory so far (``VmHWM``), MiB; None once it is gone."""
    return memory_mib(pid).get("peak")


def measure(kernel, runbook: str, params_file: Path, archive: Path, sandbox) -> dict[str, Any]:
    """Run one runbook on ``kernel`` and return its footprint on the sandbox (the measurement's own
    reads, taken by :func:`baseline`, subtracted)."""
    from smartops_nb.execution import runner
    from smartops_nb.execution.prepare import prepare

    prep = prepare(runbook, [str(params_file)], {})
    return footprint(sandbox, lambda: runner.execute(prep, progress=False, cell_timeout=120, kernel=kernel),
                     runbook, kernel)


def footprint(sandbox, run, name: str, kernel=None) -> dict[str, Any]:
    admin = sandbox.postgres.dsn(user="postgres")
    pg_reset(admin)
    redis_before, http_before = redis_commands(sandbox.redis.url), api_requests(sandbox.api_url)
    sampler = ConnectionSampler(admin, kernel_pid=kernel_pid(kernel))
    sampler.start()
    t0 = time.perf_counter()
    # the kernel's own run, as flow.investigate does it, without writing a record: the record is
    # written on the host and costs the inspected system nothing
    done = run()
    took = time.perf_counter() - t0
    sampler.stop()
    rss = sampler.peak_rss_mib
    http_after, redis_after = api_requests(sandbox.api_url), redis_commands(sandbox.redis.url)
    pg = pg_statements(admin)
    calls = {k: redis_after.get(k, 0) - redis_before.get(k, 0) for k in redis_after}
    calls = {k: v for k, v in calls.items() if v > 0}
    http = max(0.0, http_after - http_before)
    return {"runbook": name, "seconds": took, "status": getattr(done, "summary", {}).get("status"),
            "pg_max_connections": sampler.max_at_once, "pg_connections_opened": len(sampler.pids),
            "pg_statements": pg["statements"], "pg_rows_written": pg["rows_written"],
            "pg_writing_statements": pg["writing_statements"],
            "redis_commands": sum(calls.values()), "redis_scan": calls.get("scan", 0),
            "redis_on_commands": sum(v for k, v in calls.items() if k in O_N_COMMANDS),
            "redis_by_command": calls, "http_requests": int(http), "http_per_s": http / took if took else 0.0,
            "peak_rss_mib": rss}


def baseline(sandbox) -> dict[str, Any]:
    """The measurement's own footprint (its INFO and /metrics reads), with nothing run in between."""
    return footprint(sandbox, lambda: None, "(measurement alone)")


def less(row: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """``row`` with the measurement's own reads taken off."""
    out = dict(row)
    for k in ("pg_statements", "redis_commands", "http_requests"):
        out[k] = max(0, row[k] - base[k])
    by = {k: v - base["redis_by_command"].get(k, 0) for k, v in row["redis_by_command"].items()}
    out["redis_by_command"] = {k: v for k, v in by.items() if v > 0}
    out["http_per_s"] = out["http_requests"] / row["seconds"] if row["seconds"] else 0.0
    return out


def within_bounds(row: dict[str, Any]) -> list[str]:
    """The bounds a row exceeds (empty: all held)."""
    return [f"{k} {row[k]} > {v}" for k, v in BOUNDS.items() if row.get(k) is not None and row[k] > v]


def table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'runbook':<20} {'PG conn':>7} {'opened':>6} {'stmts':>5} {'rows w':>6} {'redis':>5} {'SCAN':>4} "
            f"{'O(N)':>4} {'HTTP':>5} {'req/s':>6} {'RSS MiB':>7}  bounds")
    out = [head, "-" * len(head)]
    for r in rows:
        broken = within_bounds(r)
        rss = f"{r['peak_rss_mib']:.0f}" if r["peak_rss_mib"] is not None else "?"
        out.append(f"{r['runbook']:<20} {r['pg_max_connections']:>7} {r['pg_connections_opened']:>6} "
                   f"{r['pg_statements']:>5} {r['pg_rows_written']:>6} {r['redis_commands']:>5} {r['redis_scan']:>4} "
                   f"{r['redis_on_commands']:>4} {r['http_requests']:>5} {r['http_per_s']:>6.1f} {rss:>7}  "
                   + ("held" if not broken else "EXCEEDED: " + "; ".join(broken)))
    out.append(f"bounds (investigate mode): PostgreSQL connections at once <= {BOUNDS['pg_max_connections']}, "
               f"statements <= {BOUNDS['pg_statements']}, rows written = 0; no O(N) Redis command")
    return "\n".join(out)


def footprints(sandbox, runbooks: list[str], params_file: Path, archive: Path) -> list[dict[str, Any]]:
    """Each runbook's footprint on ``sandbox``, one warm kernel each, the measurement's own reads taken
    off (``run_bench.py`` prints the same table from its own sandbox)."""
    from smartops_nb.execution.kernels import start_warm_kernel

    base, rows = baseline(sandbox), []
    for rb in runbooks:
        kernel = start_warm_kernel()
        try:
            rows.append(less(measure(kernel, rb, params_file, archive, sandbox), base))
        finally:
            kernel.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runbooks", default="", help="comma-separated runbook ids (default: all)")
    args = ap.parse_args(argv)
    from benchlib import free_port, runbook_params

    from smartops_nb import catalog
    from smartops_sandbox import Sandbox

    runbooks = [r for r in (args.runbooks.split(",") if args.runbooks else list(catalog.RUNBOOKS)) if r]
    with tempfile.TemporaryDirectory(prefix="smartops-observer-") as tmp:
        tmp = Path(tmp)
        sb = Sandbox(tmp / "sandbox", free_port(), free_port(), free_port())
        try:
            sb.up(timeout=120)
            params = runbook_params(sb, tmp)
            rows = footprints(sb, runbooks, params, tmp / "incidents")
        finally:
            sb.down()
    print(table(rows))
    return 0 if not any(within_bounds(r) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
