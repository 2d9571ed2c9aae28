"""Carry out an approved plan: claim it once, lock its target, re-check, act, verify, record.

``smartops approve PLAN_ID`` (and, on ``serve``, ``POST /approvals/PLAN_ID``) come here. In order:

1. the plan's parameters are prepared first (bad or missing input: nothing claimed);
2. the plan is *claimed* in the plan store (:class:`~smartops_nb.records.plans.PlanStore`): a single
   conditional update, so of two approvals only one carries it out; refused when it expired, was
   denied or carried out, or a later run found the incident resolved;
3. the target's lock is taken: two plans on one target run one after the other;
4. the runbook runs in ``mitigate`` mode with only the plan's action approved and ``plan_id`` /
   ``plan_target`` set: it re-investigates and acts only when the plan's cause still holds on the
   plan's target (else it records the refusal and why); the action's own evidence says before/after;
5. its record (same ``incident_id``, linked by ``plan_id``) lands in the archive, the plan's outcome
   in the plan store, and the notification targets hear how it ended.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from smartops_nb import redact
from smartops_nb.alerts import notify
from smartops_nb.contract import EXIT_FAILED, EXIT_OK, ParameterError
from smartops_nb.params import CONFIG_SECTIONS, load_yaml_files, parse_time
from smartops_nb.records import archive as record_archive
from smartops_nb.records import plans
from smartops_nb.records.plans import Plan, PlanStore

from .flow import Result, investigate
from .prepare import prepare

log = logging.getLogger("smartops.approve")


@dataclass
class Outcome:
    plan: Plan
    status: str                    # executed | refused | failed
    reason: str
    result: Result | None = None   # the mitigating run's record

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.status == plans.EXECUTED else EXIT_FAILED


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


def resolved_since(archive: Path, plan: Plan) -> str | None:
    """The record that found the plan's incident resolved after the plan was made, if any: a later
    completed run of the same incident that confirmed nothing and could look (not inconclusive)."""
    try:
        rows = record_archive.list_records(archive, limit=0, incident_id=plan.incident_id)
    except record_archive.IndexMissing:
        return None
    made = parse_time(plan.created_at)
    for row in rows:  # newest first
        if parse_time(row["started_at"]) <= made or row["status"] != "completed" or row["confirmed"]:
            continue
        try:
            summary = json.loads((archive / row["path"]).read_text()).get("metadata", {}).get("smartops", {})
        except (OSError, ValueError):
            continue
        if not (summary.get("diagnosis") or {}).get("inconclusive"):
            return row["name"]
    return None


def carry_out(plan_id: str, operator: str, archive: Path, *, files: Iterable[str] = (),
              cell_timeout: int = 600, progress: bool = False, kernel=None) -> Outcome:
    """Approve and carry out one plan; raises PlanRefused (nothing done) or ParameterError (bad input)."""
    if not operator.strip():
        raise ParameterError("an approval needs the operator's name (--operator NAME)")
    store = PlanStore(archive)
    plan = store.get(plan_id)
    base = load_yaml_files(files)
    prep = prepare(plan.runbook, cli=plan_parameters(plan, operator, base), base=base)
    plan = store.claim(plan_id, operator, resolved_by=resolved_since(archive, plan))
    log.info("plan %s approved by %s: %s on %s", plan.id, operator, plan.action, plan.target)
    with plans.target_lock(archive, plan.runbook, plan.target):
        try:
            result = investigate(prep, archive, progress=progress, cell_timeout=cell_timeout, kernel=kernel)
        except Exception as e:  # the record could not be written: the plan must not stay "approved"
            reason = redact.scrub(f"the mitigating run failed: {type(e).__name__}: {e}".splitlines()[0])
            store.finish(plan.id, plans.FAILED, reason, None)
            raise
    status, reason = outcome_of(result.summary, plan)
    plan = store.finish(plan.id, status, reason, result.record.name)
    log.info("plan %s %s: %s (record %s)", plan.id, status, reason, result.record.name)
    notify.after_plan(prep.config, plan.to_dict(), result.record, archive)
    return Outcome(plan, status, reason, result)


def deny(plan_id: str, operator: str, reason: str, archive: Path, *, files: Iterable[str] = ()) -> Plan:
    if not operator.strip() or not reason.strip():
        raise ParameterError("a denial needs the operator's name (--operator) and a reason (--reason)")
    plan = PlanStore(archive).deny(plan_id, operator, reason)
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

