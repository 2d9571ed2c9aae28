#!/usr/bin/env python
"""An alert storm against one ``smartops serve``, and what a fresh kernel costs (issue 26).

    python bench/storm_bench.py [--storm 40] [-n 3]

Starts its own SmartAmazon sandbox (free loopback ports, temporary folder) and measures, in the same run:

* **cold floor**: ``papermill`` (a new process) on a one-cell empty notebook, median of ``-n``;
* **kernel start**: request → ready with ``smartops_nb`` imported, for a forked kernel (the pools' way,
  ``execution.forkserver``; the template already up, as in a serving process) and a spawned one, median of
  ``-n`` each; a warm kernel's warm-up (one chart drawn) is extra, and shown;
* **PSS per ready kernel** (warmed, two held at once as a pool holds them, plus the template when forked),
  and USS (its private pages: what one more kernel costs), forked and spawned;
* **one warm run**: db-pool-exhausted on a ready forked kernel through ``flow.investigate``, median of ``-n``;
* **storm**: ``--storm`` distinct alerts posted at once to ``smartops serve --workers 2 --warm 2``;
  records/min from the first POST to the last record, against ``cores × 60 / one warm run``;
* ``smartops archive show NAME`` against ``smartops archive list`` on the storm's archive, median of ``-n``.

Then issue 26's targets beside each figure, ok/MISS.
"""
from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (ALERT_NAME, ALERT_RUNBOOK, empty_notebook, end_cleanly_on_sigterm, free_port, log,  # noqa: E402
                      median_time, memory_mib, papermill_process, post_alert, records_by_incident,
                      runbook_params, serving, verdict, wait_steady, warm_run)


#: Issue 26's targets.
TARGET_STORM = 0.5        # storm records/min / (cores × 60 / warm run)
TARGET_KERNEL = 0.1       # kernel start / cold floor
TARGET_PSS_MIB = 50.0     # PSS per ready kernel
TARGET_SHOW = 2.0         # archive show / archive list

LOADED = "import smartops_nb.kernel.run, pandas, matplotlib.pyplot"  # what "ready" means (no-op when forked)


def kernel_start(start: str, n: int) -> tuple[float, float]:
    """Median seconds from request to ready with smartops_nb imported; and of the warm-up (a chart) after."""
    from smartops_nb.execution import kernels

    starts, warmups = [], []
    for _ in range(n):
        t0 = time.monotonic()
        k = kernels.start_warm_kernel(start=start, warmup=LOADED)
        t1 = time.monotonic()
        try:
            kernels._silent(k.km, kernels.WARMUP_CODE, 60)
            warmups.append(time.monotonic() - t1)
        finally:
            k.close()
        starts.append(t1 - t0)
    return statistics.median(starts), statistics.median(warmups)


def ready_memory(start: str, count: int = 2) -> tuple[float, float]:
    """Median PSS and USS (MiB) of ``count`` warmed kernels held at once (as a pool holds them)."""
    from smartops_nb.execution import kernels

    held = [kernels.start_warm_kernel(start=start) for _ in range(count)]
    try:
        mem = [memory_mib(k.km.provisioner.pid) for k in held]
        return statistics.median(m.get("pss", 0.0) for m in mem), statistics.median(m.get("uss", 0.0) for m in mem)
    finally:
        for k in held:
            k.close()


def one_warm_run(params: Path, archive: Path, n: int) -> float:
    from smartops_nb.execution import kernels

    times = []
    for _ in range(n):
        k = kernels.start_warm_kernel(start="fork")
        try:
            t0 = time.monotonic()
            res = warm_run(k, ALERT_RUNBOOK, params, archive)
            times.append(time.monotonic() - t0)
            if res.summary["status"] != "completed":
                raise RuntimeError(f"warm run failed: {res.summary.get('error')}")
        finally:
            k.close()
    return statistics.median(times)


def storm(folder: Path, params: Path, n: int) -> tuple[float, int, Path]:
    """records/min of ``n`` distinct alerts posted at once (first POST → last record); the archive."""
    with serving(folder, params, workers=2, warm=2, queue_size=n) as (url, token, archive, proc):
        wait_steady(url, proc, 2, folder / "serve.log")
        fps = [secrets.token_hex(8) for _ in range(n)]
        t_first = time.time()
        refused: list[str] = []

        def post(fp: str) -> None:
            try:
                post_alert(url, fp, token)
            except Exception as e:  # noqa: BLE001 - counted and reported: the storm's figure would be wrong
                refused.append(f"{fp}: {e}")

        posters = [threading.Thread(target=post, args=(fp,)) for fp in fps]
        for t in posters:
            t.start()
        for t in posters:
            t.join()
        log(f"{n} alerts posted in {time.time() - t_first:.1f} s")
        if refused:
            raise RuntimeError(f"{len(refused)} of {n} alerts refused: {refused[:3]}")
        seen: dict[str, float] = {}
        keys = {f"incident:{ALERT_NAME}-{fp}" for fp in fps}
        deadline = time.monotonic() + 60 * n
        while not keys <= set(records_by_incident(archive, seen)):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{len(keys - set(seen))} of {n} records missing; see {folder / 'serve.log'}")
            time.sleep(0.2)
        last = max(seen[k] for k in keys)
        return n / (last - t_first) * 60, n, archive


def cli_time(args: list[str], n: int) -> float:
    cmd = [sys.executable, "-m", "smartops_nb.cli", *args]
    return median_time(lambda: subprocess.run(cmd, check=True, capture_output=True, timeout=120), n)[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--storm", type=int, default=40, help="distinct alerts in the storm (40)")
    ap.add_argument("-n", type=int, default=3, help="runs per timed measurement; medians (3)")
    args = ap.parse_args(argv)
    end_cleanly_on_sigterm()
    from smartops_sandbox import Sandbox

    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="smartops-storm-") as tmp:
        tmp = Path(tmp)
        sb = Sandbox(tmp / "sandbox", free_port(), free_port(), free_port())
        try:
            log("starting the sandbox")
            sb.up(timeout=120)
            params = runbook_params(sb, tmp)
            log("cold floor")
            floor, _ = median_time(lambda: papermill_process(empty_notebook(tmp / "empty.ipynb"),
                                                             tmp / "empty-out.ipynb"), args.n)
            log("kernel start: forked (template up first), spawned")
            kernel_start("fork", 1)  # the template starts (once per serving process: not timed)
            fork_start, fork_warm = kernel_start("fork", args.n)
            spawn_start, spawn_warm = kernel_start("spawn", args.n)
            log(f"cold floor {floor:.2f} s; kernel start fork {fork_start:.2f} s (+{fork_warm:.2f} s warm-up), "
                f"spawn {spawn_start:.2f} s (+{spawn_warm:.2f} s)")
            log("PSS per ready kernel")
            (pss_fork, uss_fork), (pss_spawn, uss_spawn) = ready_memory("fork"), ready_memory("spawn")
            log(f"per ready kernel: fork PSS {pss_fork:.0f} MiB (USS {uss_fork:.0f}), "
                f"spawn PSS {pss_spawn:.0f} MiB (USS {uss_spawn:.0f})")
            log("one warm run")
            warm = one_warm_run(params, tmp / "warm", args.n)
            log(f"one warm run {warm:.2f} s")
            log(f"storm of {args.storm} alerts to serve --workers 2 --warm 2")
            rate, n, archive = storm(tmp / "storm", params, args.storm)
            log(f"storm: {rate:.1f} records/min")
            log("archive show / archive list")
            name = sorted(p.name for p in archive.glob("*.ipynb"))[0]
            t_list = cli_time(["archive", "list", "--archive", str(archive)], args.n)
            t_show = cli_time(["archive", "show", name, "--archive", str(archive)], args.n)
        finally:
            sb.down()
    ideal = cores * 60 / warm
    load = os.getloadavg()
    print(f"\nstorm bench ({cores} cores, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at the end)")
    print(f"  cold floor (papermill, empty notebook)      {floor:6.2f} s")
    print(f"  one warm run ({ALERT_RUNBOOK}, forked kernel) {warm:6.2f} s  -> ideal {ideal:.0f} records/min")
    rows = [
        ("storm records/min / ideal", rate / ideal, f"{rate:.1f}/min of {n} alerts", TARGET_STORM, True),
        ("kernel start (fork) / cold floor", fork_start / floor, f"{fork_start:.2f} s (+{fork_warm:.2f} s warm-up)",
         TARGET_KERNEL, False),
        ("kernel start (spawn) / cold floor", spawn_start / floor,
         f"{spawn_start:.2f} s (+{spawn_warm:.2f} s warm-up)", None, False),
        ("PSS per ready kernel (fork), MiB", pss_fork, f"{pss_fork:.0f} MiB (USS {uss_fork:.0f})", TARGET_PSS_MIB,
         False),
        ("PSS per ready kernel (spawn), MiB", pss_spawn, f"{pss_spawn:.0f} MiB (USS {uss_spawn:.0f})", None, False),
        ("archive show / archive list", t_show / t_list, f"{t_show:.2f} s / {t_list:.2f} s", TARGET_SHOW, False),
    ]
    for label, value, detail, target, at_least in rows:
        ok = verdict(-value, -target) if at_least else verdict(value, target) if target is not None else ""
        mark = "" if target is None else f"{'≥' if at_least else '≤'} {target:g}  {ok}"
        print(f"  {label:<36} {value:7.2f}   {detail:<34} {mark}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
