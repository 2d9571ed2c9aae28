"""``smartops serve --queue DSN``: the webhook as in-process, but each accepted run is a job in the queue.

Routing, parameters, the episode claims and the answer are :mod:`.intake`'s, as in-process; only
queueing differs. Dedup across every replica: the episode claim in the archive index, then the
queue's own: ``queueing_lock`` = ``lock`` = ``INCIDENT:KIND`` — a repeat while the job waits raises
``AlreadyEnqueued``; a repeat while it runs or after it succeeded is refused here (a job with that
lock is ``doing`` or ``succeeded``: replicas whose archives' indexes differ still agree), and one
slipping between the two replicas' checks waits on the lock and is dropped by the worker (see
:mod:`smartops_nb.jobs.worker`). A route's ``recheck_after`` re-check is queued despite a succeeded job.
Queue unreachable → 503 and one log line; nothing half-written (one job, one statement).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Mapping

from smartops_nb.alerts import routes as routes_mod
from smartops_nb.alerts.routes import Routes
from smartops_nb.jobs import app as queue_app, queue_sql
from smartops_nb.support.reasons import one_line

from .intake import Planned, answer, claim, episode_index, plan, repeated, settle, status_of

if TYPE_CHECKING:
    from smartops_nb.records.archive import Archive

log = logging.getLogger("smartops.serve")

HEALTH_TIMEOUT = 3.0


def _unreachable_errors() -> tuple[type[BaseException], ...]:
    import psycopg
    from procrastinate.exceptions import ConnectorException

    return (ConnectorException, psycopg.Error, OSError, asyncio.TimeoutError)


UNREACHABLE = _unreachable_errors()


class QueueIntake:
    def __init__(self, routes: Routes, dsn: str, archive: Archive | None = None):
        self.routes, self.dsn = routes, dsn
        self.index = episode_index(archive)  # episode claims (None: the queue's dedup only)
        queue_app.ensure_schema(dsn)  # ParameterError (exit 2) if unreachable at start
        self.app = queue_app.make_app(dsn)
        self.accepting = True
        self.accepted = 0
        self._down_since: float | None = None

    def describe(self) -> str:
        return f"queue {queue_app.safe_dsn(self.dsn)}"

    async def open_async(self) -> None:
        await self.app.open_async()

    async def close_async_http(self) -> None:
        await self.app.close_async()

    def _down(self, e: BaseException) -> str:
        """One log line when the queue goes away (not one per alert), one when it is back."""
        if self._down_since is None:
            self._down_since = time.monotonic()
            reason = one_line(e.__cause__ or e, typed=False)
            log.error("queue unreachable (%s: %s): answering 503 until it is back", type(e).__name__, reason)
        return "queue unreachable"

    def _up(self) -> None:
        if self._down_since is not None:
            log.info("queue reachable again after %.1f s", time.monotonic() - self._down_since)
            self._down_since = None

    async def _ran(self, key: str, recheck: bool) -> bool:
        """A job with this lock (incident and kind) is running, or (unless a re-check) ran and succeeded
        in the runs queue: Procrastinate's count of jobs per lock and status, one statement."""
        busy = ("doing",) if recheck else ("doing", "succeeded")
        locks = await self.app.job_manager.list_locks_async(lock=key, queue=None if recheck else queue_app.RUNS_QUEUE)
        return any(row[status] for row in locks for status in busy)

    async def _submit(self, p: Planned) -> str:
        from procrastinate.exceptions import AlreadyEnqueued

        key = routes_mod.dedup_key(p.alert)
        recheck = bool(p.entry.get("recheck"))
        try:
            if await self._ran(key, recheck):
                outcome = "deduplicated"
            else:
                task = self.app.tasks[queue_app.RUN_TASK].configure(lock=key, queueing_lock=key)
                job_id = await task.defer_async(alert=routes_mod.job_alert(p.alert), route=p.route.key)
                outcome = "accepted"
        except AlreadyEnqueued:
            outcome = "deduplicated"
        except UNREACHABLE as e:  # connection refused, pool timeout, server restarting...
            return self._down(e)
        self._up()
        if outcome == "deduplicated":
            log.info("dedup: incident %s (%s) is already queued or running; not queueing another run",
                     *p.key)
        else:
            self.accepted += 1
            log.info("queued %s for incident %s (%s): job %s", p.prep.runbook.id, *p.key, job_id)
        return outcome

    async def handle_async(self, doc: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        from starlette.concurrency import run_in_threadpool

        out, todo = await run_in_threadpool(plan, self.routes, doc)  # CPU: off the event loop
        for p in todo:
            await asyncio.to_thread(claim, self.index, p)
            if not self.accepting:
                outcome = "shutting down"
            else:
                outcome = "deduplicated" if repeated(p) else await self._submit(p)
            await asyncio.to_thread(settle, self.index, p, outcome)
            answer(out, p, outcome)
        return status_of(out)

    async def health_async(self) -> tuple[int, dict[str, Any]]:
        body: dict[str, Any] = {"status": "ok" if self.accepting else "draining", "mode": "queue",
                                "accepted": self.accepted}
        try:
            row = await asyncio.wait_for(self.app.connector.execute_query_one_async(
                queue_sql.DEPTH, queue=queue_app.RUNS_QUEUE), HEALTH_TIMEOUT)
        except UNREACHABLE as e:
            self._down(e)  # still 200: serve itself is alive (a liveness probe must not restart it)
            body["status"] = "queue unreachable"
            body["queue"] = {"reachable": False}
            return 200, body
        self._up()
        oldest = row["oldest_waiting_s"]
        body["queue"] = {"reachable": True, "depth": row["waiting"], "running": row["running"],
                         "oldest_waiting_s": round(float(oldest), 1) if oldest is not None else None}
        return 200, body
