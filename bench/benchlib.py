"""What the benchmarks share: the floors, the runs they time, serve's alert -> record, the targets.

One implementation of each measurement, used by ``run_bench.py``, ``queue_bench.py`` and
``observer.py`` (none copies another's code).
"""
from __future__ import annotations

import functools

import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import nbformat  # noqa: E402
import yaml  # noqa: E402

PLATFORM_RUNBOOKS = {"api-down", "failed-deployment"}   # need Docker/Kubernetes; sandbox has neither
ALERT_RUNBOOK = "db-pool-exhausted"
ALERT_NAME = "PostgresConnectionsNearLimit"

#: The runbooks' deliberate waits, set to their minimum (the bench times SmartOps, not a window a
#: person chose): one sampling interval between the two scrapes a rate needs, no eviction window.
MINIMUM_WINDOWS = {"sample_seconds": 0.0, "sample_interval": 0.1, "eviction_window_s": 0.0}

#: Issue 14's targets (ratios against floors measured in the same run).
TARGET_WARM = 3.0            # warm run / warm floor
TARGET_COLD = 1.3            # cold run / plot floor
TARGET_RECORD_KB = 300.0     # record with its charts
TARGET_ALERT = 0.25          # alert -> record p50 / cold floor


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


def verdict(value: float, target: float) -> str:
    return "ok" if value <= target else "MISS"


# -- the floors ---------------------------------------------------------------------------------
def notebook(path: Path, *sources: str) -> Path:
    """A notebook of code cells ``sources`` on the python3 kernel."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def empty_notebook(path: Path) -> Path:
    """The cold and warm floor: one cell that does nothing."""
    return notebook(path, "pass")


PLOT_CELLS = ("import pandas as pd\nimport matplotlib.pyplot as plt",
              ("df = pd.DataFrame({'t': range(30), 'connections': [i % 7 for i in range(30)]})\n"
               "fig, ax = plt.subplots(figsize=(8, 3))\nax.plot(df['t'], df['connections'])\n"
               "ax.set_title('one chart')\nplt.show()"))


def plot_notebook(path: Path) -> Path:
    """The plot floor: the least a cold runbook must do (import pandas and matplotlib, draw one chart)."""
    return notebook(path, *PLOT_CELLS)


def papermill_process(nb: Path, out: Path) -> None:
    """``papermill`` as a new process on ``nb`` (the cold floor, the plot floor)."""
    subprocess.run([sys.executable, "-m", "papermill", "--no-progress-bar", str(nb), str(out)],
                   check=True, capture_output=True, timeout=120)


def memory_mib(pid: int | None) -> dict[str, float]:
    """A process's memory, MiB: ``rss`` now, ``peak`` (``VmHWM``, the most it was resident so far),
    ``pss`` (its proportional share of pages shared with other processes) and ``uss`` (its private
    pages: what one more such process costs, its shared pages being there already);
    empty once it is gone."""
    if not pid:
        return {}
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out["rss" if key == "VmRSS" else "peak"] = int(value.split()[0]) / 1024
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                out["pss"] = int(line.split()[1]) / 1024
            elif line.startswith(("Private_Clean:", "Private_Dirty:")):  # uss: its own pages alone
                out["uss"] = out.get("uss", 0.0) + int(line.split()[1]) / 1024
    except OSError:
        pass
    return out


def kernel_pid(kernel) -> int | None:
    return getattr(getattr(getattr(kernel, "km", None), "provisioner", None), "pid", None)


class Warm:
    """Warm kernels as the pool makes them (``kernels.start_warm_kernel``), one per measurement,
    started and warmed before the clock starts, closed after. No pool: a pool starts the
    replacement during the run, which on 2 cores would time the replacement's start-up too (the
    serve measurement includes that, as it happens in production).

    ``memory`` collects each kernel's memory: ``ready`` (warmed, waiting in a pool) and ``after``
    (after its run: ``peak`` is the run's high-water mark)."""

    def __init__(self) -> None:
        self.memory: list[dict[str, dict[str, float]]] = []
        import papermill  # noqa: F401  (a serving process has these loaded: not timed in a run)

        from smartops_nb.execution import flow, prepare  # noqa: F401

    def timed(self, fn: Callable[[Any], Any], n: int) -> tuple[float, list[float]]:
        from smartops_nb.execution.kernels import start_warm_kernel

        times = []
        for _ in range(n):
            kernel = start_warm_kernel()
            try:
                pid = kernel_pid(kernel)
                ready, peak, done = memory_mib(pid), [0.0], threading.Event()

                def sample(pid=pid, peak=peak, done=done) -> None:   # the run shuts its kernel down
                    while not done.wait(0.05):
                        peak[0] = max(peak[0], memory_mib(pid).get("peak", 0.0))

                sampler = threading.Thread(target=sample, daemon=True)
                sampler.start()
                t0 = time.perf_counter()
                fn(kernel)
                times.append(time.perf_counter() - t0)
                done.set()
                sampler.join()
                self.memory.append({"ready": ready, "after": {"peak": peak[0]}})
            finally:
                kernel.close()
        return statistics.median(times), times


def warm_floor(kernel, nb: Path, out: Path, *, runner_engine: bool = False) -> None:
    """``nb`` through papermill in-process on a warm kernel; ``runner_engine``: through the runner's
    papermill engine, as a served run goes (no notebook writes during the run)."""
    import papermill

    from smartops_nb.execution.runner import in_memory_engine

    engine = {"engine_name": in_memory_engine(), "request_save_on_cell_execute": False} if runner_engine else {}
    papermill.execute_notebook(str(nb), str(out), km=kernel.km, kernel_name="python3", progress_bar=False,
                               log_output=False, **engine)


def stock_warm_floor(nb: Path, out: Path, n: int) -> tuple[float, list[float]]:
    """The warm floor as issue 14 first measured it: papermill in-process on a kernel started by
    jupyter_client's own manager and client (no SmartOps kernel manager), started before the clock."""
    import papermill
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.utils import run_sync

    times = []
    for _ in range(n):
        km = AsyncKernelManager(kernel_name="python3")
        run_sync(km.start_kernel)()
        try:
            kc = km.client()   # started and answering before the clock, as a warm kernel is
            kc.start_channels()
            run_sync(kc.wait_for_ready)(timeout=60)
            kc.stop_channels()
            t0 = time.perf_counter()
            papermill.execute_notebook(str(nb), str(out), km=km, kernel_name="python3", progress_bar=False)
            times.append(time.perf_counter() - t0)
        finally:
            if km.has_kernel:
                run_sync(km.shutdown_kernel)(now=True)
    return statistics.median(times), times


# -- the runs -----------------------------------------------------------------------------------
def cold_run(runbook: str, params: Path, archive: Path) -> int:
    p = subprocess.run([sys.executable, "-m", "smartops_nb.cli", "run", runbook, "-f", str(params),
                        "--archive", str(archive), "--no-progress", "--cell-timeout", "120"],
                       capture_output=True, text=True, timeout=600, check=False)
    if p.returncode == 2:
        raise RuntimeError(f"smartops run {runbook}: bad input: {p.stderr.strip()[-500:]}")
    return p.returncode


@functools.lru_cache(maxsize=None)
def folder_archive(folder: str):
    """The folder archive (SQLite index) runs are stored in, opened once per folder, as serve opens its."""
    from smartops_nb.records.archive import open_archive

    return open_archive(folder)


def warm_run(kernel, runbook: str, params: Path, archive: Path):
    """One run on ``kernel`` through ``flow.investigate``, its record written to the folder archive
    ``archive``; returns its Result."""
    from smartops_nb.execution.flow import investigate
    from smartops_nb.execution.prepare import prepare

    prep = prepare(runbook, [str(params)], {})
    return investigate(prep, folder_archive(str(archive)), progress=False, cell_timeout=120, kernel=kernel)


def runbook_params(sb, folder: Path) -> Path:
    """The sandbox's parameters for every runbook, the deliberate windows at their minimum."""
    data = {**sb.params(), "api_log_path": str(sb.api_log), **MINIMUM_WINDOWS,
            "settle_seconds": 5.0, "health_timeout_s": 3.0,
            "disk_paths": [str(sb.state_dir)], "log_dirs": [str(sb.state_dir)], "backup_dirs": [str(sb.state_dir)],
            "walk_time_budget_s": 5.0}
    from smartops_nb.execution.prepare import all_known_parameters

    known = all_known_parameters()
    path = folder / "bench.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in data.items() if k in known}))
    return path


# -- alert -> record ------------------------------------------------------------------------------
def alert_payload(fingerprint: str) -> bytes:
    a = {"status": "firing", "labels": {"alertname": ALERT_NAME, "severity": "P1", "runbook": ALERT_RUNBOOK,
                                        "instance": "bench", "env": "bench"},
         "annotations": {"summary": "bench"}, "startsAt": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
         "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://bench/", "fingerprint": fingerprint}
    return json.dumps({"version": "4", "groupKey": "bench", "truncatedAlerts": 0, "status": "firing",
                       "receiver": "smartops", "groupLabels": {"alertname": ALERT_NAME}, "commonLabels": a["labels"],
                       "commonAnnotations": {}, "externalURL": "http://bench", "alerts": [a]}).encode()


def write_routes(folder: Path) -> Path:
    routes = folder / "routes.yaml"
    routes.write_text(yaml.safe_dump({"routes": [{"alertname": ALERT_NAME, "runbook": ALERT_RUNBOOK,
                                                  "from_labels": {"environment": "env"}}]}))
    return routes


def post_alert(url: str, fp: str, token: str = "") -> float:
    """POST one alert to ``url``/alerts; returns the wall-clock time it was sent."""
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    req = urllib.request.Request(url + "/alerts", data=alert_payload(fp), method="POST", headers=headers)
    t_post = time.time()
    with urllib.request.urlopen(req, timeout=30) as r:
        if r.status != 202:
            raise RuntimeError(f"serve answered {r.status}")
    return t_post


def records_by_incident(archive: Path, seen: dict[str, float]) -> dict[str, float]:
    """``incident:ALERTNAME-FINGERPRINT`` (an episode's alert; else the incident id) -> mtime of its
    record, for records not read yet."""
    from smartops_nb.alerts.routes import alert_key_of

    for p in archive.glob("**/*.ipynb"):
        if str(p) in seen:
            continue
        try:
            meta = json.loads(p.read_bytes()).get("metadata", {}).get("smartops", {})  # no validation: the bench's CPU is the serve's
        except Exception:  # noqa: BLE001  (a record being written: read it next time)
            continue
        if meta.get("incident_id"):
            seen[str(p)] = p.stat().st_mtime
            seen["incident:" + (alert_key_of(meta["incident_id"]) or meta["incident_id"])] = p.stat().st_mtime
    return seen


def wait_record(archive: Path, fp: str, seen: dict[str, float], timeout: float = 180, where: str = "") -> float:
    """The mtime of the record of the alert with fingerprint ``fp`` (waits for it)."""
    key, deadline = f"incident:{ALERT_NAME}-{fp}", time.monotonic() + timeout
    while key not in records_by_incident(archive, seen):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no record for alert {fp} within {timeout:.0f} s: {where}")
        time.sleep(0.05)
    return seen[key]


def end_cleanly_on_sigterm() -> None:
    """SIGTERM ends a bench as Ctrl-C does: its ``finally`` blocks stop the sandbox and servers it started."""
    def _exit(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)


def stop_process(proc: subprocess.Popen, timeout: float = 60) -> None:
    """SIGTERM, then SIGKILL to its process group (the benches start their processes in sessions)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _healthz(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
        return json.loads(r.read())


@contextmanager
def serving(folder: Path, params: Path, *, workers: int = 2, warm: int = 2, queue_size: int = 10,
            env: dict[str, str] | None = None) -> Iterator[tuple[str, str, Path, subprocess.Popen]]:
    """A real ``smartops serve`` (in-process runs, ``workers`` run slots, ``warm`` warm kernels) in its own
    session on a free port, token set: yields (url, token, archive, process); stopped after."""
    folder.mkdir(parents=True, exist_ok=True)
    archive, port, token = folder / "incidents", free_port(), secrets.token_hex(16)
    routes = write_routes(folder)
    with open(folder / "serve.log", "wb") as logf:
        proc = subprocess.Popen([sys.executable, "-m", "smartops_nb.cli", "serve", "--routes", str(routes),
                                 "-f", str(params), "--archive", str(archive), "--port", str(port),
                                 "--workers", str(workers), "--warm", str(warm), "--cell-timeout", "120",
                                 "--queue-size", str(queue_size)],
                                env={**os.environ, **(env or {}), "SMARTOPS_SERVE_TOKEN": token}, stdout=logf,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                cwd=str(folder))
        try:
            yield f"http://127.0.0.1:{port}", token, archive, proc
        finally:
            stop_process(proc)


def wait_steady(url: str, proc: subprocess.Popen, warm: int, log_file: Path, timeout: float = 120) -> None:
    """Until serve has ``warm`` kernels ready and nothing running (not timed)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("smartops serve is not ready:\n" + log_file.read_text()[-2000:])
        try:
            h = _healthz(url)
            if h["kernel_pool"]["ready"] >= warm and not h["running"]:
                return
        except OSError:
            pass
        time.sleep(0.1)


def alert_latency(folder: Path, params: Path, n_alerts: int, warm: int = 2) -> list[float]:
    """Alert -> record through a real ``smartops serve`` (in-process runs, ``warm`` warm kernels):
    one alert at a time, from the POST to the record's mtime, each sent in the steady state of a
    serving process (every warm kernel ready, nothing running: alerts are rare events)."""
    with serving(folder, params, warm=warm) as (url, token, archive, proc):
        latencies: list[float] = []
        seen: dict[str, float] = {}
        for _ in range(n_alerts):
            wait_steady(url, proc, warm, folder / "serve.log")
            fp = secrets.token_hex(8)
            t_post = post_alert(url, fp, token)
            latencies.append(wait_record(archive, fp, seen, where=str(folder / "serve.log")) - t_post)
        return latencies
