"""Carry out an approved plan: claim it once, lock its target, re-check, act, verify, record.

``smartops approve PLAN_ID`` (and, on ``serve``, ``POST /approvals/PLAN_ID``, and the plans notebook's
button) come here through :func:`smartops_nb.jobs.approvals.decide`. In order:

1. the plan's parameters are prepared first (bad or missing input: nothing claimed);
2. the plan is *claimed* in the plan store (:class:`~smartops_nb.records.plans.PlanStore`): a single
   conditional update, so of two approvals only one carries it out; refused when it expired, was
   denied or carried out, or a later run found the incident resolved;
3. with a queue (``$SMARTOPS_QUEUE``), the claimed plan becomes a job (:mod:`smartops_nb.jobs.approvals`,
   Procrastinate's ``lock`` on the target) that a worker carries out from here on
   (:func:`carry_out_approved`); without one, this process goes on;
   either way the target's lock is taken in the plan store (a file lock beside a folder archive, a
   PostgreSQL advisory lock for a shared one): two plans on one target run one after the other;
4. the runbook runs in ``mitigate`` mode with only the plan's action approved and ``plan_id`` /
   ``plan_target`` set: it re-investigates and acts only when the plan's cause still holds on the
   plan's target (else it records the refusal and why); the action's own evidence says before/after;
5. its record (same ``incident_id``, linked by ``plan_id``) lands in the archive, the plan's outcome
   in the plan store, and the notification targets hear how it ended.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from smartops_nb import redact
from smartops_nb.alerts import notify
from smartops_nb.contract import EXIT_FAILED, EXIT_OK, EXIT_PENDING, ParameterError
from smartops_nb.params import CONFIG_SECTIONS, load_yaml_files, parse_time
from smartops_nb.people import identity as people
from smartops_nb.people import policy as people_policy
from smartops_nb.people.identity import Identity
from smartops_nb.records import plans
from smartops_nb.records.archive import Archive
from smartops_nb.records.entries import IndexMissing
from smartops_nb.records.plans import Plan, PlanRefused

from .flow import Result, investigate
from .prepare import Prepared, prepare
from smartops_nb.support.reasons import one_line

log = logging.getLogger("smartops.approve")

QUEUED = "queued"  # an approval's outcome when a queue's worker carries the plan out


@dataclass
class Outcome:
    plan: Plan
    status: str                    # executed | refused | failed | pending (the two-person rule: 1 of 2) | queued
    reason: str
    result: Result | None = None   # the mitigating run's record
    job_id: int | None = None      # queued: the job a worker carries it out as

    @property
    def exit_code(self) -> int:
        return {plans.EXECUTED: EXIT_OK, QUEUED: EXIT_OK, plans.PENDING: EXIT_PENDING}.get(self.status, EXIT_FAILED)


def plan_parameters(plan: Plan, operator: str, base: Mapping[str, Any]) -> dict[str, Any]:
    """The mitigating run's parameters: the plan's own (the same systems the evidence came from),
    then the approval. A value the record had to mask (a literal password) must come from the
    parameters files given to the approval (``base``); it is never read back from the record."""
    out = {}
    for name, value in plan.plan.get("parameters", {}).items():
        if isinstance(value, str) and redact.MASK in value:
            if name not in base:
                raise ParameterError(f"plan {plan.id}: parameter {name!r} held a secret the record masks; "
                                     f"give the parameters file that has it (-f FILE)")
            continue
        out[name] = value
    return {**out, "mode": "mitigate", "approved_actions": [plan.action], "dry_run": False, "operator": operator,
            "plan_id": plan.id, "plan_target": plan.target}


def resolved_since(archive: Archive, plan: Plan) -> str | None:
    """The record that found the plan's incident resolved after the plan was made, if any: a later
    completed run of the same incident that confirmed nothing and could look (not inconclusive)."""
    try:
        rows = archive.list(limit=0, incident_id=plan.incident_id)
    except IndexMissing:
        return None
    made = parse_time(plan.created_at)
    for row in rows:  # newest first
        if parse_time(row["started_at"]) <= made or row["status"] != "completed" or row["confirmed"]:
            continue
        try:
            summary = archive.read_summary(row["name"])
        except (OSError, ValueError):
            continue
        if not (summary.get("diagnosis") or {}).get("inconclusive"):
            return row["name"]
    return None


def environment_of(plan: Plan) -> str:
    return str(plan.plan.get("parameters", {}).get("environment", ""))


def claim(plan_id: str, operator: "str | Identity", archive: Archive, *, files: Iterable[str] = (),
          policy: people_policy.Policy = people_policy.NONE) -> tuple[Plan, Prepared]:
    """Check the approval and take the plan (exactly one approver wins): its parameters are prepared
    first, so bad or missing input claims nothing. ``operator``: the approver as authenticated, or a
    typed name where nothing authenticates (a local folder archive). ``policy`` says who may approve
    this action here, and whether two different people must (then the first approval returns the
    plan still pending). Raises PlanRefused, ParameterError or :class:`~smartops_nb.people.identity.Forbidden`."""
    who = people.of(operator) if not isinstance(operator, str) or operator.strip() else None
    if who is None:
        raise ParameterError("an approval needs the operator's name (--operator NAME)")
    store = archive.plan_store()
    plan = store.get(plan_id)
    who = policy.resolve(who)
    rule = policy.may_approve(who, plan.action, environment_of(plan), plan.severity)
    base = load_yaml_files(files)
    prep = prepare(plan.runbook, cli=plan_parameters(plan, who.decider, base), base=base)
    needed = 2 if rule.two_person else 1
    plan = store.claim(plan_id, who.name, resolved_by=resolved_since(archive, plan), who=who.to_dict(), needed=needed)
    log.info("plan %s approved by %s (%d of %d): %s on %s", plan.id, who.label, max(len(plan.approvals), 1), needed,
             plan.action, plan.target)
    return plan, prep


def awaiting(plan: Plan) -> str:
    """What a partial approval under the two-person rule says."""
    names = ", ".join(d["name"] for d in plan.approvals)
    return f"approved by {names}: {len(plan.approvals)} of 2; it runs when a second person approves before {plan.expires_at}"


def carry_out(plan_id: str, operator: "str | Identity", archive: Archive, *, files: Iterable[str] = (),
              cell_timeout: int = 600, progress: bool = False, kernel=None,
              policy: people_policy.Policy = people_policy.NONE) -> Outcome:
    """Approve and carry out one plan in this process; raises PlanRefused (nothing done) or
    ParameterError (bad input)."""
    plan, prep = claim(plan_id, operator, archive, files=files, policy=policy)
    if plan.status == plans.PENDING:
        return Outcome(plan, plans.PENDING, awaiting(plan))
    return run_claimed(plan, prep, archive, lambda p: investigate(p, archive, progress=progress,
                                                                  cell_timeout=cell_timeout, kernel=kernel))


def carry_out_approved(plan_id: str, archive: Archive, base: Mapping[str, Any],
                       run: Callable[[Prepared], Result]) -> Outcome | None:
    """A plan approved elsewhere (``smartops approve`` deferred it to the queue), carried out by a
    worker with its own parameters files (``base``). None when the plan is no longer approved (an
    earlier attempt finished it, or it was released): nothing is run twice."""
    plan = archive.plan_store().get(plan_id)
    if plan.status != plans.APPROVED:
        log.info("plan %s is %s: not carried out again", plan.id, plan.state)
        return None
    try:
        decider = people.describe(plan.approvals[-1]) if plan.approvals else plan.decided_by or ""
        prep = prepare(plan.runbook, cli=plan_parameters(plan, decider, base), base=dict(base))
    except ParameterError as e:  # this worker lacks what the plan needs: the plan must not stay "approved"
        archive.plan_store().finish(plan.id, plans.FAILED, f"not carried out: {e}", None)
        raise
    return run_claimed(plan, prep, archive, run)


def run_claimed(plan: Plan, prep: Prepared, archive: Archive, run: Callable[[Prepared], Result]) -> Outcome:
    """Lock the plan's target, run the mitigating run (``run``), record the plan's outcome, notify."""
    store = archive.plan_store()
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(store.target_lock(plan))
        except PlanRefused as e:  # another plan held the target too long: nothing done, and said
            store.finish(plan.id, plans.FAILED, f"not carried out: {e}", None)
            raise
        try:
            result = run(prep)
        except Exception as e:  # the record could not be written: the plan must not stay "approved"
            reason = redact.scrub(f"the mitigating run failed: {one_line(e)}")
            store.finish(plan.id, plans.FAILED, reason, None)
            raise
    if result is None:  # a worker's run that wrote no record (its log says why)
        store.finish(plan.id, plans.FAILED, "the mitigating run wrote no record", None)
        return Outcome(store.get(plan.id), plans.FAILED, "the mitigating run wrote no record", None)
    status, reason = outcome_of(result.summary, plan)
    plan = store.finish(plan.id, status, reason, result.name)
    log.info("plan %s %s: %s (record %s)", plan.id, status, reason, result.name)
    notify.after_plan(prep.config, plan.to_dict(), result.record, archive)
    return Outcome(plan, status, reason, result)


def deny(plan_id: str, operator: "str | Identity", reason: str, archive: Archive, *, files: Iterable[str] = (),
         policy: people_policy.Policy = people_policy.NONE) -> Plan:
    named = not isinstance(operator, str) or operator.strip()
    if not named or not reason.strip():
        raise ParameterError("a denial needs the operator's name (--operator) and a reason (--reason)")
    who = policy.require(people.of(operator), "deny")
    plan = archive.plan_store().deny(plan_id, who.name, reason, who=who.to_dict())
    config = {k: v for k, v in load_yaml_files(files).items() if k in CONFIG_SECTIONS}
    notify.after_plan(config, plan.to_dict(), None, archive)
    return plan


def outcome_of(summary: Mapping[str, Any], plan: Plan) -> tuple[str, str]:
    """How the mitigating run ended for the plan: its action entry carrying the plan's id."""
    entry = next((a for a in summary.get("actions", []) if a.get("plan_id") == plan.id), None)
    if entry is None:
        why = summary.get("error") or f"status {summary.get('status')}"
        return plans.FAILED, f"the mitigating run did not reach {plan.action} ({why})"
    if entry["mode"] == "executed":
        return plans.EXECUTED, f"{plan.action} executed on {entry['target']}"
    if entry["mode"] == "refused":
        return plans.REFUSED, entry["reason"]
    return plans.FAILED, entry.get("reason") or f"{plan.action}: {entry['mode']}"

