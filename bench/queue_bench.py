#!/usr/bin/env python
"""Team mode benchmark: alert -> record through the queue against in-process, and worker scaling.

    python bench/queue_bench.py [--alerts 10] [--storm 60] [--workers 1,2,4]

Starts its own sandbox and an embedded PostgreSQL for the queue (free loopback ports, a temporary
folder; all stopped at the end), then measures in the same run:

* **alert -> record**, one alert at a time (p50/p95 over ``--alerts``): in-process
  (``smartops serve``, 2 workers, 2 warm kernels: ``run_bench.alert_latency``) and queue mode
  (``smartops serve --queue`` + one ``smartops worker --concurrency 2``), timed from the POST to
  the record's mtime;
* **throughput** of a ``--storm``-alert storm (all posted at once) with 1, 2 and 4 worker processes
  (``--concurrency 1`` each, one warm kernel each): records per minute from the first POST to the
  last record, and the ratio against one worker. The machine's cores cap the scaling.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (ALERT_RUNBOOK, REPO, alert_latency, end_cleanly_on_sigterm, free_port, percentile,  # noqa: E402
                      post_alert, runbook_params, stop_process, wait_record, write_routes)


from smartops_sandbox import Sandbox  # noqa: E402
from smartops_sandbox.postgres_server import PostgresServer  # noqa: E402


def log(msg: str) -> None:
    print(f"[queue-bench] {msg}", file=sys.stderr, flush=True)


class Team:
    """serve --queue and N workers on one fresh queue database; stopped by pid."""

    def __init__(self, folder: Path, pg: PostgresServer, params: Path, workers: int, concurrency: int):
        import psycopg

        folder.mkdir(parents=True, exist_ok=True)
        db = f"bench_{secrets.token_hex(4)}"
        with psycopg.connect(pg.dsn(db="postgres"), autocommit=True, connect_timeout=5) as c:
            c.execute(f"CREATE DATABASE {db}")
        self.dsn, self.archive, self.port, self.folder = pg.dsn(db=db), folder / "incidents", free_port(), folder
        routes = write_routes(folder)
        common = ["--queue", self.dsn, "--routes", str(routes), "-f", str(params)]
        subprocess.run([sys.executable, "-m", "smartops_nb.cli", "queue", "init", "--queue", self.dsn], check=True,
                       cwd=REPO, capture_output=True, timeout=60)
        self.procs = [self._start("serve", *common, "--port", str(self.port))]
        self.procs += [self._start("worker", *common, "--archive", str(self.archive), "--concurrency",
                                   str(concurrency), "--cell-timeout", "120", "--poll", "1", name=f"worker{i}")
                       for i in range(workers)]
        deadline = time.monotonic() + 120
        while not all("Starting worker" in (folder / f"worker{i}.log").read_text() for i in range(workers)) \
                or not self.up():
            if time.monotonic() > deadline:
                raise RuntimeError("team did not come up: see " + str(folder))
            time.sleep(0.2)
        time.sleep(5)  # warm kernels ready (not timed)

    def _start(self, *args: str, name: str | None = None) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "smartops_nb.cli", *args], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=open(self.folder / f"{name or args[0]}.log", "w"),
                                start_new_session=True, env={**os.environ, "SMARTOPS_SERVE_TOKEN": ""})

    def up(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2):
                return True
        except OSError:
            return False

    def post(self, fp: str) -> float:
        return post_alert(f"http://127.0.0.1:{self.port}", fp)

    def wait_record(self, fp: str, seen: dict, timeout: float = 300) -> float:
        return wait_record(self.archive, fp, seen, timeout, where=f"see {self.folder}")

    def stop(self) -> None:
        for p in self.procs:
            stop_process(p, 90)


def queue_latency(folder: Path, pg: PostgresServer, params: Path, n: int) -> list[float]:
    team = Team(folder, pg, params, workers=1, concurrency=2)
    try:
        out, seen = [], {}
        for _ in range(n):
            fp = secrets.token_hex(8)
            t = team.post(fp)
            out.append(team.wait_record(fp, seen) - t)
            time.sleep(3)  # a warm kernel ready again for the next alert (steady state; not timed)
        return out
    finally:
        team.stop()


@contextlib.contextmanager
def queue_postgres(folder: Path) -> Iterator[PostgresServer]:
    """The queue's own PostgreSQL (embedded, free port, under ``folder``), stopped after."""
    pg = PostgresServer(folder / "data", free_port(), max_connections=200, log_path=folder / "pg.log")
    pg.start(timeout=60)
    try:
        yield pg
    finally:
        pg.stop()


def storm(folder: Path, pg: PostgresServer, params: Path, workers: int, n: int) -> float:
    """Records per minute for ``n`` alerts posted at once to ``workers`` worker processes."""
    team = Team(folder, pg, params, workers=workers, concurrency=1)
    try:
        fps, seen = [secrets.token_hex(8) for _ in range(n)], {}
        t0 = time.time()
        for fp in fps:
            team.post(fp)
        last = max(team.wait_record(fp, seen, timeout=900) for fp in fps)
        return n / ((last - t0) / 60)
    finally:
        team.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--alerts", type=int, default=10, help="alerts for the latency comparison (10)")
    ap.add_argument("--storm", type=int, default=60, help="alerts in the throughput storm (60)")
    ap.add_argument("--workers", default="1,2,4", help="worker processes to compare (1,2,4)")
    args = ap.parse_args()
    end_cleanly_on_sigterm()
    tmp = Path(tempfile.mkdtemp(prefix="smartops-queue-bench-"))
    sb = Sandbox(tmp / "sandbox", free_port(), free_port(), free_port())
    try:
        sb.up(timeout=120)
        with queue_postgres(tmp / "queue") as pg:
            params = runbook_params(sb, tmp)
            log(f"alert -> record, in-process, {args.alerts} alerts")
            inproc = alert_latency(tmp / "inproc", params, args.alerts)
            log(f"alert -> record, queue mode, {args.alerts} alerts")
            queued = queue_latency(tmp / "queued", pg, params, args.alerts)
            rates = {}
            for w in [int(x) for x in args.workers.split(",")]:
                log(f"storm of {args.storm} alerts, {w} worker process(es)")
                rates[w] = storm(tmp / f"storm{w}", pg, params, w, args.storm)
    finally:
        sb.down()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"alert -> record ({ALERT_RUNBOOK}, {args.alerts} alerts, one at a time)   p50 s   p95 s")
    for name, lat in (("in-process (serve, 2 warm kernels)", inproc), ("queue (serve --queue + 1 worker)", queued)):
        print(f"  {name:<44} {percentile(lat, 0.5):6.2f}  {percentile(lat, 0.95):6.2f}")
    print(f"  queue / in-process p50: {percentile(queued, 0.5) / percentile(inproc, 0.5):.2f}")
    print(f"\nstorm of {args.storm} alerts posted at once (worker processes, --concurrency 1 each)")
    base = rates[min(rates)]
    for w, r in rates.items():
        print(f"  {w} worker(s): {r:6.1f} records/min   x{r / base:.2f} vs {min(rates)}")
    print(f"  (machine: {os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
