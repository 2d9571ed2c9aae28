"""SmartOps' Procrastinate tasks: one alert's run, one approved plan, and the periodic sweep that
retries stalled jobs.

A ``run`` job's arguments are the alert (labels, annotations, fingerprint, startsAt, status) and its
route's key: never parameters, so never a secret. The worker finds the route in its own routes
file, builds the parameters from it and its own ``-f`` files, and runs the runbook as ``serve``
does (:func:`smartops_nb.execution.flow.investigate_on_pool`). What a task needs from its worker
process (routes, archive, kernel pool) comes in the job context (``additional_context["smartops"]``,
a :class:`smartops_nb.jobs.worker.Runner`).
"""
from __future__ import annotations

import logging

import procrastinate
from procrastinate import JobContext

log = logging.getLogger("smartops.worker")

class BadJob(Exception):
    """The job cannot run here (its route is gone, its alert malformed): fails, with the reason noted."""


class HandedBack(Exception):
    """The worker shut down before the run finished: the job goes back to the queue for another worker."""


#: a job handed back on shutdown runs again; a bad job does not (it would fail the same way)
RETRY = procrastinate.RetryStrategy(max_attempts=5, retry_exceptions={HandedBack})


def run(context: JobContext, alert: dict, route: str) -> str:
    """Run the alert's runbook; return the record's path (or why nothing ran)."""
    return context.additional_context["smartops"].run_job(context, alert, route)


def approve(context: JobContext, plan_id: str) -> str:
    """Carry out a plan that ``smartops approve`` (or ``POST /approvals``) claimed; the job holds the
    plan's id only (the plan, its parameters and who approved it are in the archive's plan store)."""
    return context.additional_context["smartops"].approve_job(context, plan_id)


async def retry_stalled(context: JobContext, timestamp: int) -> int:
    """Jobs whose worker stopped heartbeating go back to the queue (Procrastinate's recipe): a worker
    killed mid-run loses nothing but time. The lost attempt is noted on the job."""
    return await context.additional_context["smartops"].retry_stalled(context.app)


def register(app: procrastinate.App, *, runs_queue: str, maintenance_queue: str, namespace: str) -> None:
    """Register the tasks on ``app`` (fresh Task objects per App: a Blueprint can be added to one App
    only, and a worker that reconnects, or a test process, may build more than one)."""
    app.task(name=f"{namespace}:run", queue=runs_queue, pass_context=True, retry=RETRY)(run)
    app.task(name=f"{namespace}:approve", queue=runs_queue, pass_context=True, retry=RETRY)(approve)
    sweep = app.task(name=f"{namespace}:retry_stalled", queue=maintenance_queue, pass_context=True)(retry_stalled)
    app.periodic(cron="* * * * * */5")(sweep)  # every 5 s
