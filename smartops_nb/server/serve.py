"""``smartops serve``: Alertmanager's webhook in, incident records out.

``POST /alerts`` (any path but ``/healthz``) takes Alertmanager's webhook payload (version "4").
Each alert is matched against the routes file (``parameters/routes.yaml``); a firing alert gets a
runbook run, a resolved one a confirming run when its route asks for it. The answer comes at once
(202, the accepted runs); the runs go through a bounded queue to a fixed number of workers, each
run on a warm kernel from :class:`~smartops_nb.execution.kernels.KernelPool` (if none is ready, on a kernel
started for it without warm-up: every run has a kernel that a shutdown can interrupt).

- ``incident_id`` = ``ALERTNAME-FINGERPRINT``, ``detected_at`` = the alert's ``startsAt``.
- A repeat of an alert whose run is queued or running is not run again (dedup on incident id
  and kind: a ``resolved`` confirming run is a different kind from the firing run).
- Queue full → 503 (Alertmanager retries); malformed payload → 400, nothing run.
- With a token (``--token`` / ``SMARTOPS_SERVE_TOKEN``) every POST needs ``Authorization: Bearer``;
  without one the server refuses to listen anywhere but loopback. ``GET /healthz`` needs no token
  and tells queue depth, runs in progress and pool size only.
- SIGTERM/SIGINT: stop accepting (503), let the runs in flight finish within the drain timeout,
  interrupt those still running (their records say so), log the queued ones dropped, exit.
"""
from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import queue
import signal
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Mapping

from smartops_nb.alerts import routes as routes_mod
from smartops_nb.alerts.routes import BadPayload, Routes, parse_payload
from smartops_nb.execution import kernels, runner
from smartops_nb.execution.flow import investigate
from smartops_nb.contract import SERVE_TOKEN_ENV as TOKEN_ENV
from smartops_nb.execution.prepare import Prepared, prepare
from smartops_nb.params import ParameterError

log = logging.getLogger("smartops.serve")

MAX_BODY = 1 << 20  # Alertmanager groups can be large, but not this large
SHUTDOWN_REASON = "smartops serve shut down before the run finished"


def load_routes(path: str | os.PathLike, files: list[str] = ()) -> Routes:
    """The routes file, with every route's run prepared once: a bad value fails at start, not per alert."""
    routes = routes_mod.load_routes(path, files)
    for route in routes.routes:
        prepare(route.runbook, cli=route.parameters, base=routes.base)  # ParameterError if anything is off
    return routes


# -- the work ----------------------------------------------------------------------------------
@dataclass
class Job:
    key: tuple[str, str]          # (incident_id, "firing" | "resolved")
    prep: Prepared
    kernel: Any = None            # its WarmKernel (warm or started for it) while running: drain interrupts it

    @property
    def incident_id(self) -> str:
        return self.key[0]


class Service:
    """Queue, workers, dedup and kernel pool behind the HTTP handler."""

    def __init__(self, routes: Routes, archive: Path, *, workers: int = 2, queue_size: int = 10,
                 warm: int | None = None, cell_timeout: int = 600, lease_wait: float = 5.0):
        from smartops_nb.execution.kernels import KernelPool

        self.routes, self.archive = routes, archive
        self.workers, self.cell_timeout, self.lease_wait = workers, cell_timeout, lease_wait
        self.queue: queue.Queue[Job | None] = queue.Queue(maxsize=queue_size)
        self.pool = KernelPool(workers if warm is None else warm)
        self._lock = threading.Lock()
        self._active: dict[tuple[str, str], Job] = {}     # queued or running
        self._running: dict[tuple[str, str], Job] = {}
        self._interrupting = False   # drain's timeout passed: a run that gets its kernel now is interrupted
        self.accepting = True
        self.finished = 0
        self._threads = [threading.Thread(target=self._work, name=f"smartops-worker-{i}", daemon=True)
                         for i in range(workers)]

    def start(self) -> "Service":
        self.pool.start()
        for t in self._threads:
            t.start()
        return self

    def health(self) -> dict[str, Any]:
        with self._lock:
            return {"status": "ok" if self.accepting else "draining", "queued": self.queue.qsize(),
                    "running": len(self._running), "workers": self.workers, "queue_limit": self.queue.maxsize,
                    "finished": self.finished, "kernel_pool": self.pool.stats()}

    def handle(self, doc: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        """Route and enqueue every alert of one notification; the HTTP status and the answer."""
        out: dict[str, list] = {"accepted": [], "deduplicated": [], "unrouted": [], "ignored": [], "rejected": []}
        for alert in doc["alerts"]:
            iid, kind, name = routes_mod.incident_id(alert), alert["status"], alert["labels"]["alertname"]
            log.info("alert received: %s %s (incident %s)", name, kind, iid)
            route = self.routes.find(alert["labels"])
            if route is None:
                log.warning("no route for alert %s %s", name, alert["labels"])
                out["unrouted"].append({"alertname": name, "incident_id": iid})
                continue
            if kind == "resolved" and not route.confirm_on_resolved:
                out["ignored"].append({"incident_id": iid, "reason": "resolved; route does not confirm"})
                continue
            entry = {"incident_id": iid, "runbook": route.runbook, "kind": kind}
            try:
                params = {**route.params_for(alert), "incident_id": iid,
                          "detected_at": str(alert["startsAt"]).replace("Z", "+00:00")}
                prep = prepare(route.runbook, cli=params, base=self.routes.base)
            except ParameterError as e:
                log.error("alert %s: bad parameters for %s: %s", iid, route.runbook, e)
                out["rejected"].append({**entry, "reason": str(e)})
                continue
            outcome = self._submit(Job((iid, kind), prep))
            if outcome in ("queue full", "shutting down"):
                out["rejected"].append({**entry, "reason": outcome})
            else:
                out[outcome].append(entry)
        busy = [r for r in out["rejected"] if r["reason"] in ("queue full", "shutting down")]
        # 503 makes Alertmanager retry the notification; what was accepted dedups on the retry
        status = 503 if busy else 202
        return status, {k: v for k, v in out.items() if v}

    def _submit(self, job: Job) -> str:
        with self._lock:
            if not self.accepting:
                return "shutting down"
            if job.key in self._active:
                log.info("dedup: incident %s (%s) is already queued or running; not starting another run",
                         job.incident_id, job.key[1])
                return "deduplicated"
            try:
                self.queue.put_nowait(job)
            except queue.Full:
                log.error("queue full (%d waiting, %d running): alert %s refused with 503",
                          self.queue.qsize(), len(self._running), job.incident_id)
                return "queue full"
            self._active[job.key] = job
        log.info("queued %s for incident %s (%s); %d waiting", job.prep.runbook.id, job.incident_id, job.key[1],
                 self.queue.qsize())
        return "accepted"

    def _kernel_for(self, job: Job) -> tuple[Any, str]:
        """A warm kernel from the pool, else one started for this run (no warm-up): always a WarmKernel,
        so that drain can interrupt the run. (None only if no kernel starts at all: the run then tries
        cold and records why it failed.)"""
        rb = job.prep.runbook
        name = runner.notebook_kernel_name(rb.path)
        if self.pool.size and self.pool.kernel_name == name:
            kernel = self.pool.get(self.lease_wait)
            if kernel is not None:
                return kernel, "warm"
        try:
            return kernels.start_warm_kernel(name, cwd=rb.path.parent, warmup=""), "cold"
        except Exception as e:
            log.error("no kernel for %s (incident %s): %s", rb.id, job.incident_id, e)
            return None, "cold"

    def _work(self) -> None:
        while True:
            job = self.queue.get()
            if job is None:
                return
            t0 = time.monotonic()
            kernel = None
            try:
                kernel, how = self._kernel_for(job)
                with self._lock:  # one step: drain sees the job with its kernel, or the job sees drain's flag
                    self._running[job.key] = job
                    job.kernel = kernel
                    interrupting = self._interrupting
                if interrupting and kernel is not None:
                    log.warning("shutdown: interrupting run of %s for incident %s before it began",
                                job.prep.runbook.id, job.incident_id)
                    kernel.interrupt(SHUTDOWN_REASON)
                log.info("run started: %s for incident %s (%s kernel)", job.prep.runbook.id, job.incident_id, how)
                result = investigate(job.prep, self.archive, progress=False, cell_timeout=self.cell_timeout,
                                        kernel=kernel)
                diag = result.summary["diagnosis"]
                log.info("run finished: %s for incident %s in %.1f s: %s, %s; record %s", job.prep.runbook.id,
                         job.incident_id, time.monotonic() - t0, result.summary["status"],
                         "CONFIRMED " + ",".join(diag["causes"]) if diag["confirmed"] else "not confirmed",
                         result.record)
            except Exception as e:  # record write failures and the like: log, keep serving
                log.exception("run of %s for incident %s failed without a record: %s", job.prep.runbook.id,
                              job.incident_id, e)
            finally:
                if kernel is not None:
                    kernel.close()
                with self._lock:
                    self._running.pop(job.key, None)
                    self._active.pop(job.key, None)
                    self.finished += 1

    def drain(self, timeout: float) -> None:
        """Stop accepting; finish what is in flight within ``timeout``; interrupt the rest."""
        with self._lock:
            self.accepting = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._active:
                    break
            time.sleep(0.1)
        dropped = []
        while True:
            try:
                job = self.queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                dropped.append(job)
                with self._lock:
                    self._active.pop(job.key, None)
        for job in dropped:
            log.warning("shutdown: run of %s for incident %s was queued and never started (not recorded)",
                        job.prep.runbook.id, job.incident_id)
        with self._lock:
            self._interrupting = True
            running = list(self._running.values())
        for job in running:
            log.warning("shutdown: interrupting run of %s for incident %s (drain timeout %.0f s)",
                        job.prep.runbook.id, job.incident_id, timeout)
            if job.kernel is not None:
                job.kernel.interrupt(SHUTDOWN_REASON)
        for _ in self._threads:
            self.queue.put(None)
        for t in self._threads:
            t.join(timeout=30)
        self.pool.close()


# -- HTTP --------------------------------------------------------------------------------------
def _handler(service: Service, token: str | None):
    class Handler(BaseHTTPRequestHandler):
        server_version = "smartops-serve"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s %s", self.address_string(), format % args)

        def _send(self, status: int, body: Mapping[str, Any]) -> None:
            data = json.dumps(body, default=str).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 401:
                self.send_header("WWW-Authenticate", 'Bearer realm="smartops"')
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.split("?")[0] == "/healthz":
                self._send(200, service.health())
            else:
                self._send(404, {"error": "not found; POST alerts to /alerts, GET /healthz"})

        def do_POST(self) -> None:
            if token is not None:
                given = self.headers.get("Authorization", "")
                expected = f"Bearer {token}"
                if not hmac.compare_digest(given.encode(), expected.encode()):
                    log.warning("unauthorized POST from %s (%s token)", self.client_address[0],
                                "wrong" if given else "no")
                    self._send(401, {"error": "missing or wrong bearer token"})
                    return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_BODY:
                self._send(413 if length > MAX_BODY else 400, {"error": "bad or too large Content-Length"})
                return
            try:
                doc = parse_payload(self.rfile.read(length))
            except BadPayload as e:
                log.warning("malformed payload from %s: %s (nothing run)", self.client_address[0], e)
                self._send(400, {"error": f"malformed Alertmanager payload: {e}"})
                return
            if not service.accepting:
                self._send(503, {"error": "shutting down"})
                return
            status, body = service.handle(doc)
            self._send(status, body)

    return Handler


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(routes: Routes, archive: Path, *, host: str = "127.0.0.1", port: int = 9095, token: str | None = None,
          workers: int = 2, queue_size: int = 10, warm: int | None = None, drain_timeout: float = 60,
          cell_timeout: int = 600) -> int:
    """Listen until SIGTERM/SIGINT, then drain. Refuses a non-loopback address without a token."""
    if not token and not is_loopback(host):
        raise ParameterError(f"refusing to listen on {host} without a token (--token or ${TOKEN_ENV}); "
                             "without one only loopback is allowed")
    service = Service(routes, archive, workers=workers, queue_size=queue_size, warm=warm, cell_timeout=cell_timeout)
    httpd = ThreadingHTTPServer((host, port), _handler(service, token))
    httpd.daemon_threads = True
    service.start()
    stop = threading.Event()

    def on_signal(signum, frame):
        if not stop.is_set():
            log.info("%s received: no new alerts; draining (up to %.0f s)", signal.Signals(signum).name,
                     drain_timeout)
            stop.set()
            service.accepting = False
            threading.Thread(target=httpd.shutdown, daemon=True).start()  # shutdown() blocks: not here

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    log.info("listening on http://%s:%d (routes: %d, workers %d, queue %d, warm kernels %d, archive %s, %s)",
             host, httpd.server_address[1], len(routes.routes), workers, queue_size, service.pool.size, archive,
             "bearer token required" if token else "no token: loopback only")
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        httpd.server_close()
        service.drain(drain_timeout)
        for s, h in old.items():
            signal.signal(s, h)
    log.info("stopped (%d runs finished)", service.finished)
    return 0

