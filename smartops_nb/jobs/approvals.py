"""Where an approved plan is carried out (:func:`decide`), and an approval handed to the queue.

``smartops approve PLAN_ID``, ``POST /approvals/PLAN_ID``, the incident page's Approve button and the
plans notebook's button all call :func:`decide`: with a queue, the approving process claims the plan
and a worker carries it out; without one, it is carried out in the approving process
(:func:`smartops_nb.execution.approve.carry_out`). With a queue, the claim happens first, in the
approving process, so a refusal (expired, denied, already carried out, incident resolved, bad
input) is said at once and nothing is queued. The job then holds only the
plan's id, with two Procrastinate locks: ``queueing_lock`` on the plan (it is queued once) and
``lock`` on its target (:attr:`~smartops_nb.records.plans.Plan.lock_key`: two plans on one target
run one after the other, whichever workers take them). If the queue refuses the job, the claim is
released: the plan is pending again and nothing was done.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterable

from smartops_nb.execution import approve
from smartops_nb.execution.approve import QUEUED, Outcome
from smartops_nb.people import policy as people_policy
from smartops_nb.records.archive import Archive
from smartops_nb.records.plans import APPROVED, PENDING, Plan, PlanRefused
from smartops_nb.support.reasons import flat

from . import app as queue_app

log = logging.getLogger("smartops.approve")


def decide(plan_id: str, operator: Any, archive: Archive, *, queue: str | None = None, files: Iterable[str] = (),
           policy: people_policy.Policy = people_policy.NONE, cell_timeout: int = 600) -> Outcome:
    """Approve a plan; the one place that says where it is carried out: by a worker of ``queue`` (a
    DSN; the outcome is ``queued``, with the job's id) when one is given, else here and now. Either
    way the outcome may be ``pending`` (the first of two approvals the policy asks for). Raises
    PlanRefused, ParameterError, :class:`~smartops_nb.people.identity.Forbidden` (nothing done)."""
    if queue:
        return queue_approval(queue, plan_id, operator, archive, files=files, policy=policy)
    return approve.carry_out(plan_id, operator, archive, files=files, cell_timeout=cell_timeout, policy=policy)


def queue_approval(dsn: str, plan_id: str, operator: Any, archive: Archive, *, files: Iterable[str] = (),
                   policy: people_policy.Policy = people_policy.NONE) -> Outcome:
    """Claim the plan and defer its job (outcome ``queued``, or ``pending`` under the two-person rule);
    raises PlanRefused / ParameterError (nothing claimed: also when the queue is unreachable), or
    PlanRefused when the queue refused the job (claim released)."""
    import psycopg
    from procrastinate import exceptions

    try:
        with queue_app.connect(dsn):  # unreachable: one line, not a pool's retries, and nothing claimed
            pass
    except psycopg.Error as e:
        raise PlanRefused(f"plan {plan_id}: the queue at {queue_app.safe_dsn(dsn)} is unreachable "
                          f"({flat(e)}); nothing approved, nothing done") from None
    plan, _ = approve.claim(plan_id, operator, archive, files=files, policy=policy)
    if plan.status != APPROVED:  # the two-person rule: one of two approvals, nothing to queue yet
        return Outcome(plan, PENDING, approve.awaiting(plan))
    app = queue_app.make_app(dsn)
    try:
        with app.open():
            task = app.tasks[queue_app.APPROVE_TASK].configure(lock=plan.lock_key, queueing_lock=f"plan:{plan.id}")
            job_id = task.defer(plan_id=plan.id)
    except (psycopg.Error, exceptions.ProcrastinateException, OSError) as e:
        reason = flat(e.__cause__ or e) or type(e).__name__
        archive.plan_store().release(plan.id, f"not queued: {reason}")
        raise PlanRefused(f"plan {plan.id}: the queue at {queue_app.safe_dsn(dsn)} did not take it ({reason}); "
                          f"released, nothing done: approve again") from None
    log.info("plan %s approved by %s: queued as job %s (%s on %s)", plan.id, operator, job_id, plan.action,
             plan.target)
    return Outcome(plan, QUEUED, f"approved by {plan.decided_by}; a worker carries it out", job_id=job_id)


def wait_for_outcome(archive: Archive, plan_id: str, timeout: float, *,
                     tick: Callable[[Plan, float], None] | None = None, every: float = 1.0) -> Plan:
    """Poll the plan store until the plan's fate is known (or ``timeout`` s); the plan as it is then."""
    store = archive.plan_store()
    t0 = time.monotonic()
    while True:
        plan = store.get(plan_id)
        waited = time.monotonic() - t0
        if plan.status != APPROVED or waited >= timeout:  # decided (final), or released
            return plan
        if tick is not None:
            tick(plan, waited)
        time.sleep(every)
