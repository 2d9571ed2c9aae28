"""``smartops worker``: take jobs from the queue and run them as ``serve`` does in-process.

One process runs two Procrastinate workers on one App: ``smartops-runs`` with ``--concurrency``
slots (each run on its own kernel, warm if the pool has one), and ``smartops-maintenance`` with
one slot for the periodic stalled-job sweep (so the sweep never waits behind long runs).

- Every run has a wall-clock deadline enforced from outside the kernel (its process group is
  killed; :meth:`~smartops_nb.execution.kernels.RunHandle.deadline`): a hung kernel never holds a slot.
- Heartbeats every ``heartbeat`` s; a worker silent for ``stalled_after`` s is dead: the sweep hands
  its jobs to the others, and the lost attempt is noted on the job and in the retry's record.
- SIGTERM/SIGINT drain: runs finish within ``drain_timeout`` or their kernel is killed, the record
  says so, and the job goes back to the queue for another worker.
- The queue's PostgreSQL gone: the worker logs one line and reconnects, bounded, until stopped.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
from typing import Any

from smartops_nb.alerts import routes as routes_mod
from smartops_nb.alerts.routes import Routes
from smartops_nb.execution import approve
from smartops_nb.execution.flow import investigate_on_pool
from smartops_nb.execution.kernels import KernelPool, RunHandle
from smartops_nb.execution.prepare import prepare
from smartops_nb.params import ParameterError
from smartops_nb.records.archive import Archive
from smartops_nb.records.plans import PlanRefused
from smartops_nb.records.storage import name_in
from smartops_nb.resources import process_stats
from smartops_nb.support.reasons import one_line

from . import app as queue_app, queue_sql
from .tasks import BadJob, HandedBack

log = logging.getLogger("smartops.worker")

HANDED_BACK = "smartops worker shut down before the run finished; handed back to the queue"
RECONNECT_S = 0.5       # between attempts while the queue is away (each bounded by CONNECT_TIMEOUT)
POOL_TIMEOUT_S = 2.0    # a worker's wait for a pooled connection: a lost queue is noticed, not waited on

class _QuietSweeps(logging.Filter):
    """The stalled-job sweep runs every few seconds: keep its routine INFO lines out of the log; and
    when the queue goes away, Procrastinate's own tracebacks of it (one per listener, heartbeat and
    worker, and asyncio's "Task exception was never retrieved" for a job whose end could not be saved:
    the stalled-job sweep takes it up) are dropped: the worker logs one line when it is lost and one
    when it is back."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (record.name.startswith("procrastinate") or record.name == "asyncio") \
                and record.levelno >= logging.ERROR and _lost(record):
            return False
        return record.levelno > logging.INFO or "retry_stalled" not in record.getMessage()


def _lost(record: logging.LogRecord) -> bool:
    """A log record of the queue's connection going away (not of a job failing)."""
    from procrastinate.exceptions import ConnectorException

    exc = record.exc_info[1] if record.exc_info else None
    return isinstance(exc, ConnectorException) or "listener error" in record.getMessage()


class Runner:
    """The worker process's side of a job: its routes and ``-f`` files, archive, kernel pool, limits."""

    def __init__(self, dsn: str, routes: Routes, archive: Archive, *, warm: int = 1, cell_timeout: int = 600,
                 run_timeout: float = 1800, stalled_after: float = 30, lease_wait: float = 5.0):
        self.dsn, self.routes, self.archive = dsn, routes, archive
        self.cell_timeout, self.run_timeout, self.stalled_after = cell_timeout, run_timeout, stalled_after
        self.lease_wait = lease_wait
        self.pool = KernelPool(warm)

    # -- notes on a job (what Procrastinate does not keep) -----------------------------------------
    def _note(self, job_id: int, text: str) -> None:
        try:
            with queue_app.connect(self.dsn, autocommit=True) as c:
                queue_app.note(c, job_id, text)
        except Exception as e:  # the queue is down: the log has it
            log.warning("job %s: note not saved (%s): %s", job_id, type(e).__name__, text)

    def _earlier(self, job_id: int) -> list[str]:
        try:
            with queue_app.connect(self.dsn, autocommit=True) as c:
                return queue_app.notes(c, job_id)
        except Exception:
            return []

    def _ran_meanwhile(self, job) -> int | None:
        try:
            with queue_app.connect(self.dsn, autocommit=True) as c:
                row = c.execute(queue_sql.RAN_MEANWHILE, {"lock": job.lock, "id": job.id,
                                                    "queue": queue_app.RUNS_QUEUE}).fetchone()
        except Exception as e:
            log.warning("job %s: dedup check failed (%s); running it", job.id, e)
            return None
        return row[0] if row else None

    # -- a run job ---------------------------------------------------------------------------------
    def run_job(self, context, alert: dict[str, Any], route_key: str) -> str:
        job = context.job
        attempt = job.attempts + 1
        try:
            iid, kind = routes_mod.incident_id(alert), alert["status"]
        except (KeyError, TypeError) as e:
            return self._bad(job, f"malformed alert in the job (missing {e})")
        route = self.routes.by_key(route_key)
        if route is None:
            return self._bad(job, f"route {route_key!r} is not in this worker's routes file (removed or renamed "
                                  f"since the job was queued); nothing ran")
        try:
            prep = prepare(route.runbook, cli=routes_mod.run_parameters(route, alert, self.routes.severities),
                           base=self.routes.base)
        except ParameterError as e:
            return self._bad(job, f"bad parameters for {route.runbook}: {e}")
        other = self._ran_meanwhile(job)
        if other is not None:
            log.info("dedup: incident %s (%s) ran as job %s while job %s waited; not running it again",
                     iid, kind, other, job.id)
            self._note(job.id, f"duplicate: job {other} for the same incident ran meanwhile; nothing ran")
            return f"duplicate of job {other}"
        if attempt > 1:
            done_by = self._recorded_already(job.id, iid)
            if done_by is not None:
                log.warning("job %s: an earlier attempt wrote record %s but its end never reached the queue; "
                            "not running it again", job.id, name_in(done_by))
                self._note(job.id, f"attempt {attempt}: nothing run; attempt before wrote {name_in(done_by)} "
                                   f"(its end was not acknowledged: the queue was unreachable)")
                return done_by
        log.info("job %s: attempt %d of %s for incident %s (%s)", job.id, attempt, prep.runbook.id, iid, kind)
        result, handed = self._watched_run(context, prep, iid)
        if result is None:
            self._note(job.id, f"attempt {attempt}: no record could be written (see the worker's log)")
            raise RuntimeError("no record could be written")
        where = f"record {result.name}: {result.summary['status']}"
        if handed:
            self._note(job.id, f"attempt {attempt} handed back on shutdown ({where})")
            raise HandedBack(HANDED_BACK)
        self._note(job.id, f"attempt {attempt}: {where}")
        return str(result.record)

    def _watched_run(self, context, prep, iid: str):
        """Run on a pool kernel, watching for Procrastinate's abort (shutdown): the kernel is killed
        then, and the caller hands the job back. Returns (result or None, whether it was handed back)."""
        job = context.job
        annotate = {"queue": {"job": job.id, "attempt": job.attempts + 1, "worker": context.worker_name,
                              "earlier_attempts": self._earlier(job.id)}}
        handle = RunHandle()
        done = threading.Event()

        def watch() -> None:  # Procrastinate asks a sync job to abort through should_abort()
            while not done.wait(0.5):
                if context.should_abort():
                    log.warning("shutdown: ending run of %s for incident %s (job %s); handing it back",
                                prep.runbook.id, iid, job.id)
                    handle.end(HANDED_BACK)
                    return

        watcher = threading.Thread(target=watch, name=f"smartops-job-{job.id}-watch", daemon=True)
        watcher.start()
        try:
            result = investigate_on_pool(prep, self.archive, self.pool, incident=iid, handle=handle,
                                         lease_wait=self.lease_wait, cell_timeout=self.cell_timeout,
                                         deadline=self.run_timeout, annotate=annotate)
        finally:
            done.set()
            watcher.join(5)
        log.info("job %s: done; process: %s", job.id, process_stats())
        return result, handle.ended == HANDED_BACK

    # -- an approved plan, deferred by `smartops approve` / POST /approvals ------------------------
    def approve_job(self, context, plan_id: str) -> str:
        """Carry out a plan approved elsewhere (the approval claimed it); Procrastinate's ``lock`` on
        the plan's target keeps two such jobs from running at once across every worker."""
        job = context.job
        handed: list[bool] = []

        def run(prep):
            result, was_handed = self._watched_run(context, prep, prep.parameters.get("incident_id", ""))
            handed.append(was_handed)
            return result

        try:
            out = approve.carry_out_approved(plan_id, self.archive, self.routes.base, run)
        except ParameterError as e:
            return self._bad(job, f"plan {plan_id}: bad parameters here: {e}")
        except PlanRefused as e:
            return self._bad(job, str(e))
        if out is None:
            self._note(job.id, f"plan {plan_id}: no longer approved (carried out or released); nothing ran")
            return "nothing to do"
        where = f"plan {plan_id} {out.status}: {out.reason}" + (f" (record {out.result.name})"
                                                              if out.result else "")
        self._note(job.id, f"attempt {job.attempts + 1}: {where}")
        if any(handed):
            raise HandedBack(HANDED_BACK)
        return where

    def _recorded_already(self, job_id: int, iid: str) -> str | None:
        """The record an earlier attempt of this job finished (not one handed back), if any: its worker
        lost the queue before it could mark the job done, so the stalled sweep handed it out again."""
        try:
            rows = self.archive.list(incident_id=iid, limit=50)
        except Exception:  # no index yet: no record either
            return None
        for row in rows:
            try:  # through the archive's storage: a folder here, or s3:// shared by every worker
                meta = self.archive.read_summary(row["name"])
            except Exception:
                continue
            q = meta.get("queue") or {}
            if q.get("job") == job_id and HANDED_BACK not in str(meta.get("error") or ""):
                return self.archive.storage.where(row["name"])  # a path, or an s3:// URL
        return None

    def _bad(self, job, reason: str) -> str:
        log.error("job %s failed: %s", job.id, reason)
        self._note(job.id, f"failed: {reason}")
        raise BadJob(reason)

    # -- the stalled-job sweep ---------------------------------------------------------------------
    async def retry_stalled(self, app) -> int:
        from procrastinate.jobs import Status

        stalled = await app.job_manager.get_stalled_jobs(queue=queue_app.RUNS_QUEUE,
                                                         seconds_since_heartbeat=self.stalled_after)
        for job in stalled:
            lost = (f"attempt {job.attempts + 1} lost: its worker ({job.worker_id or 'gone'}) stopped "
                    f"heartbeating for {self.stalled_after:.0f} s; handed to another worker")
            try:
                await app.job_manager.retry_job(job)
            except Exception as e:  # a newer job for the same incident is queued: that one runs
                log.warning("stalled job %s not retried (%s); marking it failed", job.id, e)
                lost = f"attempt {job.attempts + 1} lost with its worker; not retried: {e}"
                await app.job_manager.finish_job_by_id_async(job.id, status=Status.FAILED, delete_job=False)
            await app.connector.execute_query_async(queue_sql.ADD_NOTE, job_id=job.id, note=lost)
            log.warning("job %s: %s", job.id, lost)
        return len(stalled)


def run_worker(dsn: str, runner: Runner, *, concurrency: int = 2, drain_timeout: float = 60,
               heartbeat: float = 10.0, poll: float = 5.0) -> int:
    """Work until SIGTERM/SIGINT; then drain. Reconnects (bounded waits) when the queue goes away."""
    queue_app.ensure_schema(dsn)  # ParameterError (exit 2) if unreachable at start
    quiet = _QuietSweeps()
    for handler in logging.getLogger().handlers:
        handler.addFilter(quiet)
    runner.pool.start()
    name = f"{socket.gethostname()}:{os.getpid()}"
    log.info("worker %s on %s (concurrency %d, warm kernels %d, run deadline %.0f s, archive %s)", name,
             queue_app.safe_dsn(dsn), concurrency, runner.pool.size, runner.run_timeout, runner.archive)
    try:
        asyncio.run(_work(dsn, runner, name=name, concurrency=concurrency, drain_timeout=drain_timeout,
                          heartbeat=heartbeat, poll=poll))
    finally:
        runner.pool.close()
    log.info("worker %s stopped", name)
    return 0


async def _name_workers(dsn: str, name: str, workers: list) -> None:
    """Once the process's Procrastinate workers have registered, note them as ``name`` (host:pid), so
    that `queue status` shows one worker per process. Bounded: gives up after 10 s."""
    for _ in range(100):
        ids = [w.worker_id for w in workers]
        if all(ids):
            try:
                await asyncio.to_thread(queue_app.name_workers, dsn, name, ids)
            except Exception as e:  # only `queue status` loses the name
                log.warning("worker names not noted (%s: %s)", type(e).__name__, e)
            return
        await asyncio.sleep(0.1)


async def _work(dsn: str, runner: Runner, *, name: str, concurrency: int, drain_timeout: float,
                heartbeat: float, poll: float) -> None:
    from procrastinate.worker import Worker

    stop = asyncio.Event()
    current: list = []

    def on_signal(signum: int) -> None:
        if not stop.is_set():
            log.info("%s received: taking no new jobs; draining (up to %.0f s)", signal.Signals(signum).name,
                     drain_timeout)
        stop.set()
        for w in current:
            w.stop()

    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, on_signal, s)
    common = dict(additional_context={"smartops": runner}, install_signal_handlers=False,
                  update_heartbeat_interval=heartbeat, stalled_worker_timeout=runner.stalled_after,
                  fetch_job_polling_interval=poll, abort_job_polling_interval=poll, name=name)
    app = queue_app.make_app(dsn, pool_timeout=POOL_TIMEOUT_S)  # one App; reopened after a lost connection
    lost_at: float | None = None
    while not stop.is_set():
        try:
            async with app.open_async():
                current[:] = [
                    Worker(app, queues=[queue_app.RUNS_QUEUE], concurrency=concurrency,
                           shutdown_graceful_timeout=drain_timeout, **common),
                    Worker(app, queues=[queue_app.MAINTENANCE_QUEUE], concurrency=1, shutdown_graceful_timeout=5,
                           delete_jobs="successful", **common)]  # sweeps that found nothing leave no rows
                tasks = [asyncio.create_task(w.run()) for w in current]
                if lost_at is not None:
                    log.info("queue reachable again after %.1f s: back at work", time.monotonic() - lost_at)
                    lost_at = None
                naming = asyncio.create_task(_name_workers(dsn, name, list(current)))
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                naming.cancel()
                for w in current:  # one stopped (signal, or its connection failed): stop the other too
                    w.stop()
                results = await asyncio.gather(*tasks, return_exceptions=True)
                errors = [r for r in results if isinstance(r, BaseException)]
                if errors:
                    raise errors[0]
        except Exception as e:
            if stop.is_set():
                break
            reason = one_line(e.__cause__ or e, typed=False)
            if lost_at is None:  # one line when it goes away; the attempts until it is back are quiet
                lost_at = time.monotonic()
                log.error("queue connection lost (%s: %s); reconnecting every %.1f s", type(e).__name__, reason,
                          RECONNECT_S)
            else:
                log.debug("queue still unreachable (%s: %s)", type(e).__name__, reason)
        current.clear()
        if not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), RECONNECT_S)
            except asyncio.TimeoutError:
                pass
