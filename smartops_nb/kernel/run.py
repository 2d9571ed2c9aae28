"""One execution of a runbook inside the kernel: steps, findings, diagnosis, actions, timeline.

A notebook calls :func:`begin` once after its parameters cell and :meth:`Run.finish` last. Each
investigation step is a ``with run.step(...)`` block: an exception inside it becomes a finding with
status ``error`` and the run goes on. The state is written after every step to the file named by
``SMARTOPS_STATE_FILE`` (set by the runner), so even a run whose kernel dies leaves its findings.
"""
from __future__ import annotations

import getpass
import json
import os
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Mapping

from smartops_nb import catalog, redact, response
from smartops_nb.actions import RECOMMENDED, REFUSED, Action, carry_out, decide
from smartops_nb.contract import RECORD_SCHEMA, STATE_ENV
from smartops_nb.findings import Diagnosis, Finding, steps_read_by
from smartops_nb.params import Params, iso, parse_time, utcnow
from smartops_nb.support.files import replace_atomically
from smartops_nb.support.reasons import one_line
from smartops_nb.records import plans


from . import approvals, display

_IPYTHON_NAMES = {"In", "Out", "exit", "quit", "get_ipython"}


def _parameters_from(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The parameter-like globals of a notebook: plain literals, not modules or IPython's own."""
    return {
        k: v for k, v in namespace.items()
        if not k.startswith("_") and k not in _IPYTHON_NAMES
        and isinstance(v, (str, int, float, bool, list, dict, type(None)))
    }


class Run:
    def __init__(self, runbook_id: str, values: Mapping[str, Any]):
        self.runbook = catalog.get(runbook_id)
        merged = {**self.runbook.defaults(), **values}
        self.started_at = utcnow()
        merged["severity"] = merged.get("severity") or self.runbook.severity
        merged["detected_at"] = iso(parse_time(merged["detected_at"], name="detected_at")) if merged.get(
            "detected_at") else iso(self.started_at)
        merged["incident_id"] = merged.get("incident_id") or (
            f"{self.runbook.id}-{self.started_at.strftime('%Y%m%dT%H%M%SZ')}")
        merged["operator"] = merged.get("operator") or _os_user()
        self.params = Params(merged)
        self.app_name = f"smartops:{self.runbook.id}"
        self.findings: list[Finding] = []
        self.actions: list[dict[str, Any]] = []
        self.plans: list[dict[str, Any]] = []     # recommended actions waiting for approval (records/plans.py)
        self.timeline: list[dict[str, str]] = []
        self.diagnosis: Diagnosis | None = None
        self.finished_at: str | None = None
        self._state_file = os.environ.get(STATE_ENV)
        self._persist_failed = False
        self._resources: dict[str, Any] = {}
        self.contacts = response.contacts_from_env()
        # secrets in the parameters (URL passwords, env: values) are masked wherever they appear
        for secret in redact.secrets_in(merged):
            redact.register_secret(secret)
        self.event(f"run started ({self.params.mode} mode, operator {self.params.operator})")

    # -- the systems under investigation (opened lazily, once per run) -------------------------
    def postgres(self):
        """The read-only PostgreSQL session of this run (logs in on first use)."""
        if "postgres" not in self._resources:
            from smartops_nb.probes.postgres import Session

            self._resources["postgres"] = Session(self.params.postgres_dsn, self.app_name,
                                                  self.params.get("postgres_admin_dsn", ""))
        return self._resources["postgres"]

    def platform(self):
        """The Docker or Kubernetes driver named by ``platform`` (connects on first call)."""
        if "platform" not in self._resources:
            from smartops_nb import platforms

            self._resources["platform"] = platforms.connect(self.params)
        return self._resources["platform"]

    def release(self) -> None:
        """Close what the run opened: during a pool-exhausted incident an idle runbook session left
        open in JupyterLab would itself hold a slot. A later step simply opens it again."""
        session = self._resources.get("postgres")
        if session is not None:
            session.close()

    # -- record keeping ----------------------------------------------------------------------
    def event(self, text: str) -> None:
        self.timeline.append({"at": iso(utcnow()), "event": redact.scrub(text)})
        self._persist()

    def finding(self, finding: Finding, check: str | None = None) -> Finding:
        """Record a check's conclusion (the current step's check name unless it has one)."""
        finding.check = str(finding.check or check or getattr(self, "_current_check", "") or "unnamed")
        finding.summary = redact.scrub(finding.summary)
        finding.data = redact.scrub_obj(_jsonable(finding.data))
        self.findings.append(finding)
        display.show_finding(finding)
        return finding

    @contextmanager
    def step(self, check: str, title: str) -> Iterator[None]:
        """An investigation step. Errors inside become an ``error`` finding; the run goes on."""
        self._current_check = check
        before = len(self.findings)
        self.event(f"step started: {title}")
        try:
            yield
        except Exception as e:  # one unreachable service must not end the investigation
            reason = redact.scrub(one_line(e))
            self.finding(Finding("error", f"{title}: could not complete ({reason})",
                                 {"error": reason, "error_type": type(e).__name__}), check)
        else:
            if len(self.findings) == before:
                self.finding(Finding("ok", f"{title}: evidence shown, nothing to flag"), check)
        finally:
            self._current_check = ""
            last = self.findings[-1] if len(self.findings) > before else None
            self.event(f"step finished: {title} ({last.status if last else 'no finding'})")

    def diagnose(self, rule: Callable[[list[Finding], Params], Diagnosis]) -> Diagnosis:
        """Turn the findings into cause codes with the runbook's rule, and show the verdict.

        A step the rule reads (``@reads``) that left no finding — a cell skipped, or renamed — is
        recorded as an ``error`` finding first: the diagnosis then says it is incomplete."""
        seen = {f.check for f in self.findings}
        for step in steps_read_by(rule):
            if step not in seen:
                self.finding(Finding("error", f"step {step!r} did not run: the diagnosis needs its finding",
                                     {"error": "step did not run", "missing_step": step}), step)
        diagnosis = rule(self.findings, self.params)
        unknown = set(diagnosis.causes) - set(self.runbook.causes)
        if unknown:
            raise ValueError(f"diagnosis rule returned unknown cause codes {sorted(unknown)}")
        diagnosis.incomplete = [f.check for f in self.findings if f.status == "error"]
        if diagnosis.inconclusive and "could not" not in diagnosis.summary:
            diagnosis.summary += (f" Inconclusive: {', '.join(diagnosis.incomplete)} could not complete, so "
                                  "this is not evidence that the system is healthy.")
        diagnosis.summary = redact.scrub(diagnosis.summary)
        self.diagnosis = diagnosis
        causes = ", ".join(diagnosis.causes) or "none"
        self.event(f"diagnosis reached: {'confirmed' if diagnosis.confirmed else 'not confirmed'} (causes: {causes})")
        display.show_message(f"Diagnosis: {diagnosis.summary}", "critical" if diagnosis.confirmed else "ok")
        return diagnosis

    def act(self, action: Action, when: str | Iterable[str]) -> dict[str, Any] | None:
        """Recommend or run a mitigation if the diagnosis has one of the causes it is for.

        A recommended action gets a plan (:mod:`smartops_nb.records.plans`) that a person can
        approve later; a run carrying out a plan (``plan_id``) acts only when the plan's cause still
        holds on the plan's target, and otherwise records the refusal and why."""
        causes = {when} if isinstance(when, str) else set(when)
        if action.name not in self.runbook.actions:
            raise ValueError(f"{action.name!r} is not an action of runbook {self.runbook.id}")
        held = causes & set(self.diagnosis.causes if self.diagnosis else ())
        refusal = self._plan_refusal(action, held, causes)
        if refusal:
            return self.record_action(self._entry(action, REFUSED, refusal, {}))
        if not held:
            display.show_message(f"{action.name}: not needed (none of {', '.join(sorted(causes))} confirmed)", "ok")
            return None
        decision, reason = decide(action, mode=self.params.mode, approved=self.params.approved_actions,
                                  dry_run=bool(self.params.dry_run))
        mode, result = carry_out(action, decision)
        entry = self._entry(action, mode, reason, result)
        if mode == RECOMMENDED and not action.manual and not self.params.dry_run and not self.params.plan_id:
            entry["plan_id"] = self._plan(action, held, entry["result"])["id"]
        self.record_action(entry)
        if mode == RECOMMENDED and not action.manual and not self.params.dry_run and approvals.interactive():
            approvals.offer(self, action, entry)  # a live JupyterLab session: a person may approve it here
        return entry

    def _entry(self, action: Action, mode: str, reason: str, result: dict[str, Any]) -> "ActionEntry":
        entry = ActionEntry({
            "action": action.name, "target": redact.scrub(action.target), "mode": mode, "at": iso(utcnow()),
            "operator": self.params.operator, "reason": redact.scrub(reason), "description": action.description,
            "result": redact.scrub_obj(_jsonable(result)),
        })
        if self.params.plan_id and action.name in self.params.approved_actions:
            entry.update(plan_id=self.params.plan_id, approved_by=self.params.operator)
        return entry

    def _plan_refusal(self, action: Action, held: set[str], causes: set[str]) -> str | None:
        """Why a run carrying out a plan must not act (None: it may): the cause is gone, or the
        evidence now names another target than the one the plan was approved for."""
        p = self.params
        if not p.plan_id or action.name not in p.approved_actions:
            return None
        if not held:
            now = self.diagnosis.summary if self.diagnosis else "no diagnosis reached"
            return f"plan {p.plan_id}: {' / '.join(sorted(causes))} no longer holds, nothing done. Now: {now}"
        target = redact.scrub(action.target)
        if p.plan_target and target != p.plan_target:
            return (f"plan {p.plan_id}: the evidence now names {target!r}, the plan was approved for "
                    f"{p.plan_target!r}; nothing done")
        return None

    def _plan(self, action: Action, held: set[str], preview: Any) -> dict[str, Any]:
        raw = self.params.raw()
        evidence = {"target": action.target, "preview": preview,
                    "findings": [f.to_dict() for f in self.findings if f.status in ("critical", "warn")]}
        plan = plans.make(runbook=self.runbook.id, incident_id=raw["incident_id"], severity=raw["severity"],
                          action=action.name, target=redact.scrub(action.target), causes=sorted(held),
                          parameters=raw, evidence=_jsonable(evidence),
                          expires_minutes=float(self.params.approval_expires_minutes or 0))
        self.plans.append(plan)
        self.event(f"plan {plan['id']}: {action.name} awaits approval until {plan['expires_at']} "
                   f"({plans.approve_command(plan)})")
        return plan

    def record_action(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Add an action entry (decided here or approved interactively), log it and show it."""
        self.actions.append(entry)
        plan = f" (plan {entry['plan_id']}, approved by {entry['approved_by']})" if entry.get("approved_by") and \
            entry.get("plan_id") else ""
        self.event(f"action {entry['action']} on {entry['target']}: {entry['mode']}{plan}")
        status = {"executed": "ok", "failed": "error", "recommended": "warn", "dry-run": "warn",
                  "refused": "warn"}[entry["mode"]]
        display.show_message(f"{entry['action']} → {entry['target']}: {entry['mode']}. {entry['description']}. "
                             f"{entry['reason']}", status)
        return entry

    def response(self) -> dict[str, Any]:
        """Response time against the severity's target and the escalations due (see :mod:`.response`)."""
        executed = [a["at"] for a in self.actions if a["mode"] == "executed"]
        confirmed = bool(self.diagnosis and self.diagnosis.confirmed)
        # resolved as far as this run can tell: nothing confirmed, or every action it needed was executed
        needed = {a["action"] for a in self.actions}
        done = {a["action"] for a in self.actions if a["mode"] == "executed"}
        resolved = self.diagnosis is not None and self.finished_at is not None and (
            (not confirmed and not self.diagnosis.inconclusive) or (bool(needed) and needed == done))
        raw = self.params.raw()
        return response.assess(raw["severity"], raw["detected_at"], now=self.finished_at or iso(utcnow()),
                               responded_at=executed[0] if executed else self.finished_at, resolved=resolved,
                               people=self.contacts)

    def summary(self, status: str = "running") -> dict[str, Any]:
        p = self.params
        raw = p.raw()
        return {
            "schema": RECORD_SCHEMA,
            "runbook": self.runbook.id,
            "title": self.runbook.title,
            "severity": raw["severity"],
            "environment": raw["environment"],
            "incident_id": raw["incident_id"],
            "detected_at": raw["detected_at"],
            "started_at": iso(self.started_at),
            "finished_at": self.finished_at,
            "status": status,
            "mode": raw["mode"],
            "operator": raw["operator"],
            "diagnosis": (self.diagnosis.to_dict() if self.diagnosis
                          else {"confirmed": False, "causes": [], "summary": "no diagnosis reached"}),
            "findings": [f.to_dict() for f in self.findings],
            "actions": list(self.actions),
            "plans": list(self.plans),
            "timeline": list(self.timeline),
            "response": self.response(),
            "parameters": redact.scrub_obj({k: redact.mask_url(v) if isinstance(v, str) else v
                                            for k, v in raw.items()}),
        }

    def finish(self) -> dict[str, Any]:
        """Close the run: timestamp, persist, and show the summary as the record's last cell."""
        self.finished_at = iso(utcnow())
        self.timeline.append({"at": self.finished_at, "event": "run finished"})
        summary = self.summary("completed")
        self._persist(summary)
        self.release()
        display.show_summary(summary)
        from . import interactive

        interactive.offer_save(self)  # a "Save incident record" button, in a live JupyterLab session only
        return summary

    def _persist(self, summary: dict[str, Any] | None = None) -> None:
        if not self._state_file:
            return
        data = summary or self.summary("running" if self.finished_at is None else "completed")
        try:
            replace_atomically(self._state_file, json.dumps(data, default=str))
        except OSError as e:  # a safety net (e.g. /tmp full during disk-full) must not end the run
            if not self._persist_failed:
                self._persist_failed = True
                self.timeline.append({"at": iso(utcnow()), "event": f"state file not written: {e.strerror}"})


class ActionEntry(dict):
    """An action-log entry; as a cell's last value it shows one line, not its whole evidence."""

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(f"<action {self['action']}: {self['mode']}>")


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def begin(runbook_id: str, namespace: Mapping[str, Any]) -> Run:
    """Start a runbook run from the notebook's parameter globals (``begin(ID, globals())``)."""
    from . import interactive
    from smartops_nb.params import check_values

    applied = interactive.apply_parameters_file(runbook_id, namespace)  # JupyterLab only, never papermill
    values = _parameters_from(namespace)
    check_values(values, actions=catalog.get(runbook_id).actions)
    run = interactive.track(Run(runbook_id, values), applied)
    display.show_lessons(*interactive.lessons(runbook_id))
    return run
