#!/usr/bin/env python
"""SmartOps benchmark: how long a runbook takes cold and warm against floors measured in the same
run, how big its record is, and how fast an alert becomes a record (in-process and through the queue).

    python bench/run_bench.py [-n 3] [--alerts 20] [--runbooks high-latency,db-pool-exhausted] [--queue]

Starts its own SmartAmazon sandbox (PostgreSQL, Redis, API on free loopback ports, in a temporary
folder; stopped at the end) and measures, medians of ``-n`` runs each:

* **floors**: ``papermill`` (a new process) on a one-cell empty notebook (the *cold floor*); the same
  on a notebook that imports pandas and matplotlib and draws one chart (the *plot floor*: the least
  a cold runbook must do); a warm kernel running the empty notebook through papermill in this
  process (the *warm floor*), and for comparison the same on a kernel of jupyter_client's own
  manager (whose client waits a fixed 0.2 s that the pool's kernels no longer do);
* **cold**: ``smartops run RUNBOOK`` as a new process (what a person or cron does);
* **warm**: the same run on a warm kernel as :class:`smartops_nb.execution.kernels.KernelPool` makes them
  (started, ``smartops_nb`` imported, before the clock starts), through ``flow.investigate``;
* **record size** of the warm run's record (its charts included);
* **alert → record**: a real ``smartops serve`` process (2 workers, 2 warm kernels), one Alertmanager
  v4 payload at a time in the steady state (both warm kernels ready), timed from the POST to the
  record's mtime; p50 and p95 over ``--alerts`` alerts. ``--queue`` adds the same through the queue
  (``serve --queue`` + one worker on an embedded PostgreSQL: ``queue_bench.queue_latency``);
* **observer overhead**: what each runbook costs the sandbox it inspects (PostgreSQL connections at
  once and opened, statements, rows written; Redis commands, SCAN and O(N) ones; HTTP requests and
  their rate; the kernel's peak RSS): ``bench/observer.py``'s measurement, on this run's sandbox,
  with its bounds beside each row;
* **archive list** over 10,000 index entries: ``bench/archive_list.py`` (run as it is).

Then the targets of issue 14, each with ok/MISS: warm / warm floor ≤ 3×, cold / plot floor ≤ 1.3×,
record ≤ 300 KB, alert → record p50 / cold floor ≤ 0.25×, and the observer's bounds.

The sandbox is healthy during the runs: the runbooks investigate and find nothing, the common
case of an alert that needs a look. api-down and failed-deployment need a platform (Docker or
Kubernetes) that the sandbox's host processes do not have: their platform steps end as error
findings (marked in the table). Runbook parameters: the sandbox's, the deliberate sampling windows at
their minimum (``benchlib.MINIMUM_WINDOWS``), the disk runbook pointed at the sandbox's folder.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (ALERT_RUNBOOK, MINIMUM_WINDOWS, PLATFORM_RUNBOOKS, REPO, TARGET_ALERT, TARGET_COLD,  # noqa: E402
                      TARGET_RECORD_KB, TARGET_WARM, Warm, alert_latency, cold_run, empty_notebook,
                      end_cleanly_on_sigterm, free_port, log, median_time, papermill_process, percentile,
                      plot_notebook, runbook_params, stock_warm_floor, verdict, warm_floor, warm_run)



def archive_list() -> str:
    script = REPO / "bench" / "archive_list.py"
    if not script.exists():
        return "bench/archive_list.py is not there: archive list time not measured"
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=str(REPO),
                       check=False)
    return (p.stdout.strip() or p.stderr.strip()[-1500:]) + ("" if p.returncode == 0 else f"\n(exit {p.returncode})")


def queue_alert_latency(folder: Path, params: Path, n_alerts: int) -> list[float]:
    """Alert -> record through the queue: ``queue_bench``'s measurement, on a PostgreSQL of its own."""
    from queue_bench import queue_latency, queue_postgres

    with queue_postgres(folder / "pg") as pg:
        return queue_latency(folder / "team", pg, params, n_alerts)


def fmt(x: float) -> str:
    return f"{x:6.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=3, help="runs per measurement; medians are reported (3)")
    ap.add_argument("--alerts", type=int, default=20, help="alerts sent through serve (20)")
    ap.add_argument("--runbooks", default="", help="comma-separated runbook ids (default: all)")
    ap.add_argument("--queue", action="store_true", help="also measure alert -> record through the queue")
    ap.add_argument("--skip-cold", action="store_true", help="do not time cold runs (iterating on warm runs)")
    ap.add_argument("--skip-serve", action="store_true", help="do not measure alert-to-record latency")
    ap.add_argument("--skip-archive", action="store_true", help="do not run bench/archive_list.py")
    ap.add_argument("--skip-observer", action="store_true", help="do not measure the runbooks' footprint")
    args = ap.parse_args(argv)
    end_cleanly_on_sigterm()

    from smartops_nb import catalog
    from smartops_sandbox import Sandbox

    runbooks = [r for r in (args.runbooks.split(",") if args.runbooks else list(catalog.RUNBOOKS)) if r]
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="smartops-bench-") as tmp:
        tmp = Path(tmp)
        sb = Sandbox(tmp / "sandbox", free_port(), free_port(), free_port())
        warm = Warm()
        try:
            log("starting the sandbox")
            sb.up(timeout=120)
            params = runbook_params(sb, tmp)
            footprints: list = []
            nb, plot_nb = empty_notebook(tmp / "empty.ipynb"), plot_notebook(tmp / "plot.ipynb")
            log("floors")
            floor_cold, _ = median_time(lambda: papermill_process(nb, tmp / "empty-out.ipynb"), args.n)
            floor_plot, _ = median_time(lambda: papermill_process(plot_nb, tmp / "plot-out.ipynb"), args.n)
            floor_warm, _ = warm.timed(lambda k: warm_floor(k, nb, tmp / "empty-warm.ipynb"), args.n)
            floor_stock, _ = stock_warm_floor(nb, tmp / "empty-stock.ipynb", args.n)
            rows = []
            for rb in runbooks:
                log(f"{rb}: {0 if args.skip_cold else args.n} cold, {args.n} warm")
                cold = None if args.skip_cold else \
                    median_time(lambda rb=rb: cold_run(rb, params, tmp / "cold"), args.n)[0]
                results: list = []
                hot, _ = warm.timed(lambda k, rb=rb, res=results: res.append(warm_run(k, rb, params, tmp / "warm")),
                                    args.n)
                errors = sum(f["status"] == "error" for f in results[-1].summary["findings"])
                kb = statistics.median(r.record.stat().st_size for r in results) / 1024
                peak = max((m["after"].get("peak", 0.0) for m in warm.memory[-args.n:]), default=0.0)
                rows.append((rb, cold, hot, kb, errors, peak))
            if not args.skip_observer:
                from observer import footprints as measure_footprints

                log("observer overhead: one warm run per runbook")
                footprints = measure_footprints(sb, runbooks, params, tmp / "observer")
            lat, qlat = [], []
            if not args.skip_serve:
                log(f"alert -> record through smartops serve, {args.alerts} alerts")
                lat = alert_latency(tmp / "serve", params, args.alerts)
            if args.queue:
                log(f"alert -> record through the queue, {args.alerts} alerts")
                qlat = queue_alert_latency(tmp / "queue", params, args.alerts)
        finally:
            log("stopping the sandbox")
            sb.down()
        archive_out = "" if args.skip_archive else archive_list()

    print(f"\nSmartOps benchmark: medians of {args.n}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}; load average at the end {os.getloadavg()[0]:.1f}; "
          f"total {time.monotonic() - t_start:.0f} s; windows {MINIMUM_WINDOWS}\n")
    print(f"floor, cold: papermill (new process) on a 1-cell empty notebook            {floor_cold:6.2f} s")
    print(f"floor, plot: papermill (new process), import pandas + matplotlib, 1 chart  {floor_plot:6.2f} s"
          f"  ({floor_plot / floor_cold:.1f}x the cold floor)")
    print(f"floor, warm: warm kernel running the empty notebook (papermill, in-process) {floor_warm:6.2f} s")
    print(f"  (the same on a kernel of jupyter_client's own manager and client, as issue 14 first measured "
          f"the warm floor: {floor_stock:.2f} s; warm runs / that: "
          + ", ".join(f"{rb} {hot / floor_stock:.1f}x" for rb, _, hot, *_ in rows) + ")\n")
    head = (f"{'runbook':<20} {'cold s':>7} {'warm s':>7} {'warm/floor':>10}      {'cold/plot':>9}      "
            f"{'record KB':>9}      {'kernel MiB':>10}  notes")
    print(head)
    print("-" * len(head))
    for rb, cold, hot, kb, errors, peak in rows:
        note = []
        if rb in PLATFORM_RUNBOOKS:
            note.append("no platform in the sandbox")
        if errors:
            note.append(f"{errors} error findings")
        w = hot / floor_warm
        cold_s, cold_r = ("      -", "        -     ") if cold is None else \
            (fmt(cold), f"{cold / floor_plot:9.2f} {verdict(cold / floor_plot, TARGET_COLD):<4}")
        print(f"{rb:<20} {cold_s:>7} {fmt(hot):>7} {w:10.2f} {verdict(w, TARGET_WARM):<4} {cold_r} "
              f"{kb:9.0f} {verdict(kb, TARGET_RECORD_KB):<4} {peak:10.0f}  {'; '.join(note)}")
    print(f"targets: warm/floor <= {TARGET_WARM:g}x, cold/plot floor <= {TARGET_COLD:g}x, "
          f"record <= {TARGET_RECORD_KB:g} KB; kernel MiB: the warm kernel's peak RSS during the run")
    ready = [m["ready"] for m in warm.memory if m["ready"]]
    if ready:
        rss, pss = (statistics.median(m.get(k, 0.0) for m in ready) for k in ("rss", "pss"))
        peak = max(m["after"].get("peak", 0.0) for m in warm.memory)
        print(f"\nmemory per warm kernel (median of {len(ready)}): {rss:.0f} MiB RSS ready in the pool "
              f"({pss:.0f} MiB PSS: its share of pages shared with the other kernels); at most {peak:.0f} MiB "
              f"RSS during a run; {1024 / peak:.1f} warm kernels per GiB left to SmartOps")
    for name, values in (("smartops serve, in-process (2 workers, 2 warm kernels)", lat),
                         ("the queue (serve --queue + 1 worker, --concurrency 2)", qlat)):
        if values:
            p50 = percentile(values, 0.5)
            print(f"\nalert -> record through {name}: {ALERT_RUNBOOK}, {len(values)} alerts, one at a time:\n"
                  f"  p50 {p50:.2f} s, p95 {percentile(values, 0.95):.2f} s, min {min(values):.2f} s, "
                  f"max {max(values):.2f} s;  p50 / cold floor {p50 / floor_cold:.2f}  "
                  f"{verdict(p50 / floor_cold, TARGET_ALERT)} (target <= {TARGET_ALERT:g}x)")
    if footprints:
        from observer import table

        print("\nwhat each runbook costs the system it inspects (bench/observer.py, one warm run each on the "
              "healthy sandbox):")
        print(table(footprints))
    if archive_out:
        print("\narchive list over 10,000 index entries (bench/archive_list.py):")
        print(archive_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
