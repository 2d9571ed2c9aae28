#!/usr/bin/env python
"""SmartOps benchmark: how long a runbook takes cold and warm, what the floor is, and how fast an
alert becomes a record through `smartops serve`.

    python bench/run_bench.py [-n 3] [--alerts 20] [--runbooks high-latency,db-pool-exhausted]

Starts its own SmartAmazon sandbox (PostgreSQL, Redis, API on free loopback ports, in a temporary
folder; stopped at the end) and measures, medians of ``-n`` runs each:

* **cold**: ``smartops run RUNBOOK`` as a new process (what a person or cron does);
* **warm**: the same run on a warm kernel as :class:`smartops_nb.execution.kernels.KernelPool` makes them
  (started, ``smartops_nb`` imported, before the clock starts), through ``flow.investigate``;
* **floors**, measured in the same run: ``papermill`` (a new process) on a one-cell empty notebook
  (the cold floor), and a warm kernel running that notebook through papermill in this process
  (the warm floor); the ratios are against these;
* **alert → record**: a real ``smartops serve`` process (2 workers, 2 warm kernels); one
  Alertmanager v4 payload at a time, timed from the POST to the record's mtime in the archive;
  p50 and p95 over ``--alerts`` alerts (distinct fingerprints, so none is deduplicated);
* **archive list** over 10,000 index entries: ``bench/archive_list.py`` (run as it is).

The sandbox is healthy during the runs: the runbooks investigate and find nothing, the common
case of an alert that needs a look. api-down and failed-deployment need a platform (Docker or
Kubernetes) that the sandbox's host processes do not have: their platform steps end as error
findings (marked in the table). Runbook parameters: the sandbox's, with short sampling windows
(``sample_seconds`` 2), the disk runbook pointed at the sandbox's folder.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import nbformat  # noqa: E402
import yaml  # noqa: E402

PLATFORM_RUNBOOKS = {"api-down", "failed-deployment"}   # need Docker/Kubernetes; sandbox has neither
ALERT_RUNBOOK = "db-pool-exhausted"
ALERT_NAME = "PostgresConnectionsNearLimit"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def median_time(fn: Callable[[], Any], n: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- what is measured ---------------------------------------------------------------------------
def empty_notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("pass")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def cold_floor(nb: Path, out: Path) -> None:
    subprocess.run([sys.executable, "-m", "papermill", "--no-progress-bar", str(nb), str(out)],
                   check=True, capture_output=True, timeout=120)


def cold_run(runbook: str, params: Path, archive: Path) -> int:
    p = subprocess.run([sys.executable, "-m", "smartops_nb.cli", "run", runbook, "-f", str(params),
                        "--archive", str(archive), "--no-progress", "--cell-timeout", "120"],
                       capture_output=True, text=True, timeout=600)
    if p.returncode == 2:
        raise RuntimeError(f"smartops run {runbook}: bad input: {p.stderr.strip()[-500:]}")
    return p.returncode


class Warm:
    """Warm kernels as the pool makes them (``kernels.start_warm_kernel``), one per measurement,
    started and warmed before the clock starts, closed after. No pool: a pool starts the
    replacement during the run, which on 2 cores would time the replacement's start-up too (the
    serve measurement below includes that, as it happens in production)."""

    def timed(self, fn: Callable[[Any], Any], n: int) -> tuple[float, list[float]]:
        from smartops_nb.execution.kernels import start_warm_kernel

        times = []
        for _ in range(n):
            kernel = start_warm_kernel()
            try:
                t0 = time.perf_counter()
                fn(kernel)
                times.append(time.perf_counter() - t0)
            finally:
                kernel.close()
        return statistics.median(times), times


def warm_floor(kernel, nb: Path, out: Path) -> None:
    import papermill

    papermill.execute_notebook(str(nb), str(out), km=kernel.km, kernel_name="python3", progress_bar=False,
                               log_output=False)


def warm_run(kernel, runbook: str, params: Path, archive: Path) -> dict:
    from smartops_nb.execution.flow import investigate
    from smartops_nb.execution.prepare import prepare

    prep = prepare(runbook, [str(params)], {})
    result = investigate(prep, archive, progress=False, cell_timeout=120, kernel=kernel)
    return result.summary


# -- serve ----------------------------------------------------------------------------------
def alert_payload(fingerprint: str) -> bytes:
    a = {"status": "firing", "labels": {"alertname": ALERT_NAME, "severity": "P1", "runbook": ALERT_RUNBOOK,
                                        "instance": "bench", "env": "bench"},
         "annotations": {"summary": "bench"}, "startsAt": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
         "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://bench/", "fingerprint": fingerprint}
    return json.dumps({"version": "4", "groupKey": "bench", "truncatedAlerts": 0, "status": "firing",
                       "receiver": "smartops", "groupLabels": {"alertname": ALERT_NAME}, "commonLabels": a["labels"],
                       "commonAnnotations": {}, "externalURL": "http://bench", "alerts": [a]}).encode()


def records_by_incident(archive: Path, seen: dict[str, float]) -> dict[str, float]:
    """incident_id -> mtime of its record, for records not read yet."""
    for p in archive.glob("**/*.ipynb"):
        if str(p) in seen:
            continue
        try:
            meta = nbformat.read(p, as_version=4).metadata.get("smartops", {})
        except Exception:
            continue
        if meta.get("incident_id"):
            seen[str(p)] = p.stat().st_mtime
            seen["incident:" + meta["incident_id"]] = p.stat().st_mtime
    return seen


def alert_latency(folder: Path, params: Path, n_alerts: int) -> list[float]:
    folder.mkdir(parents=True, exist_ok=True)
    archive, port, token = folder / "incidents", free_port(), secrets.token_hex(16)
    routes = folder / "routes.yaml"
    routes.write_text(yaml.safe_dump({"routes": [{"alertname": ALERT_NAME, "runbook": ALERT_RUNBOOK,
                                                  "from_labels": {"environment": "env"}}]}))
    logf = open(folder / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "smartops_nb.cli", "serve", "--routes", str(routes),
                             "-f", str(params), "--archive", str(archive), "--port", str(port),
                             "--workers", "2", "--warm", "2", "--cell-timeout", "120"],
                            env={**os.environ, "SMARTOPS_SERVE_TOKEN": token}, stdout=logf, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, cwd=str(folder))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:   # up, and both warm kernels ready: the steady state of a serving process
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("smartops serve did not come up:\n" + (folder / "serve.log").read_text()[-2000:])
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                    if json.loads(r.read())["kernel_pool"]["ready"] >= 2:
                        break
            except OSError:
                pass
            time.sleep(0.2)
        latencies, seen = [], {}
        for i in range(n_alerts):
            fp = secrets.token_hex(8)
            req = urllib.request.Request(url + "/alerts", data=alert_payload(fp), method="POST",
                                         headers={"Authorization": f"Bearer {token}",
                                                  "Content-Type": "application/json"})
            t_post = time.time()
            with urllib.request.urlopen(req, timeout=10) as r:
                if r.status != 202:
                    raise RuntimeError(f"serve answered {r.status}")
            key, deadline = f"incident:{ALERT_NAME}-{fp}", time.monotonic() + 180
            while key not in records_by_incident(archive, seen):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no record for alert {i} within 180 s:\n"
                                       + (folder / "serve.log").read_text()[-2000:])
                time.sleep(0.05)
            latencies.append(seen[key] - t_post)
            # the steady state again: a warm kernel ready for the next alert (not timed)
            wait_until = time.monotonic() + 60
            while time.monotonic() < wait_until:
                with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                    h = json.loads(r.read())
                if h["kernel_pool"]["ready"] >= 1 and not h["running"]:
                    break
                time.sleep(0.1)
        return latencies
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
        logf.close()


def archive_list() -> str:
    script = REPO / "bench" / "archive_list.py"
    if not script.exists():
        return "bench/archive_list.py is not there: archive list time not measured"
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=str(REPO))
    return (p.stdout.strip() or p.stderr.strip()[-1500:]) + ("" if p.returncode == 0 else f"\n(exit {p.returncode})")


# -- main -------------------------------------------------------------------------------------
def runbook_params(sb, folder: Path) -> Path:
    data = {**sb.params(), "api_log_path": str(sb.api_log), "sample_seconds": 2.0, "sample_interval": 1.0,
            "eviction_window_s": 1.0, "settle_seconds": 5.0, "health_timeout_s": 3.0,
            "disk_paths": [str(sb.state_dir)], "log_dirs": [str(sb.state_dir)], "backup_dirs": [str(sb.state_dir)],
            "walk_time_budget_s": 5.0}
    from smartops_nb.execution.prepare import all_known_parameters

    known = all_known_parameters()
    path = folder / "bench.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in data.items() if k in known}))
    return path


def fmt(x: float) -> str:
    return f"{x:6.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=3, help="runs per measurement; medians are reported (3)")
    ap.add_argument("--alerts", type=int, default=20, help="alerts sent through serve (20)")
    ap.add_argument("--runbooks", default="", help="comma-separated runbook ids (default: all)")
    ap.add_argument("--skip-serve", action="store_true", help="do not measure alert-to-record latency")
    ap.add_argument("--skip-archive", action="store_true", help="do not run bench/archive_list.py")
    args = ap.parse_args(argv)

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
            nb = empty_notebook(tmp / "empty.ipynb")
            log("floors")
            floor_cold, _ = median_time(lambda: cold_floor(nb, tmp / "empty-out.ipynb"), args.n)
            floor_warm, _ = warm.timed(lambda k: warm_floor(k, nb, tmp / "empty-warm.ipynb"), args.n)
            rows = []
            for rb in runbooks:
                log(f"{rb}: {args.n} cold, {args.n} warm")
                cold, _ = median_time(lambda: cold_run(rb, params, tmp / "cold"), args.n)
                summaries: list[dict] = []
                hot, _ = warm.timed(lambda k: summaries.append(warm_run(k, rb, params, tmp / "warm")), args.n)
                errors = sum(f["status"] == "error" for f in summaries[-1]["findings"])
                rows.append((rb, cold, hot, errors))
            lat = []
            if not args.skip_serve:
                log(f"alert -> record through smartops serve, {args.alerts} alerts")
                lat = alert_latency(tmp / "serve", params, args.alerts)
        finally:
            log("stopping the sandbox")
            sb.down()
        archive_out = "" if args.skip_archive else archive_list()

    cores = os.cpu_count()
    print(f"\nSmartOps benchmark: medians of {args.n}, {cores} cores, Python {sys.version.split()[0]}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}; load average at the end {os.getloadavg()[0]:.1f}; "
          f"total {time.monotonic() - t_start:.0f} s\n")
    print(f"floor, cold: papermill (new process) on a 1-cell empty notebook   {floor_cold:6.2f} s")
    print(f"floor, warm: warm kernel running that notebook (papermill, in-process) {floor_warm:6.2f} s\n")
    head = (f"{'runbook':<20} {'cold s':>7} {'warm s':>7} {'cold/warm':>9} {'cold/floor':>10} "
            f"{'warm/floor':>10}  notes")
    print(head)
    print("-" * len(head))
    for rb, cold, hot, errors in rows:
        note = []
        if rb in PLATFORM_RUNBOOKS:
            note.append("no platform in the sandbox")
        if errors:
            note.append(f"{errors} error findings")
        print(f"{rb:<20} {fmt(cold):>7} {fmt(hot):>7} {cold / hot:9.1f} {cold / floor_cold:10.1f} "
              f"{hot / floor_warm:10.1f}  {'; '.join(note)}")
    if lat:
        print(f"\nalert -> record through smartops serve ({ALERT_RUNBOOK}, {len(lat)} alerts, one at a time, "
              f"2 warm kernels): p50 {percentile(lat, 0.5):.2f} s, p95 {percentile(lat, 0.95):.2f} s, "
              f"min {min(lat):.2f} s, max {max(lat):.2f} s")
    if archive_out:
        print("\narchive list over 10,000 index entries (bench/archive_list.py):")
        print(archive_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
