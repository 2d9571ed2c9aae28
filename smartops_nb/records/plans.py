"""Plans: a mitigation a headless run recommended, bound to its target and evidence, waiting for a person.

A run that only *recommends* an action records a plan for it in ``metadata.smartops.plans``
(:func:`make`): a short id safe to paste, the action, the target the evidence named, the parameters
the mitigating run will use (secrets as references or masked, never values), a digest of the
evidence, and when it expires (the severity's response target from the seed's table, or the
parameter ``approval_expires_minutes``). The record is immutable; what happens to a plan afterwards
(approved, executed, refused, denied, expired) is kept in a small store beside the archive
(:class:`PlanStore`, ``plans.sqlite``), where approving is a single conditional update: two
approvals of one plan cannot both win, so a plan is carried out at most once.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from smartops_nb import redact
from smartops_nb.params import iso, parse_time, utcnow
from smartops_nb.response import TARGETS

from .render import plan_command as approve_command  # noqa: F401  (re-exported: one wording everywhere)

STORE_NAME = "plans.sqlite"
LOCKS_DIR = ".locks"
PENDING, APPROVED, EXECUTED, REFUSED, FAILED, DENIED, EXPIRED = (
    "pending", "approved", "executed", "refused", "failed", "denied", "expired")
FINAL = (EXECUTED, REFUSED, FAILED, DENIED)
#: Parameters a plan does not carry: the mitigating run sets them itself.
RUN_OWN = ("mode", "approved_actions", "dry_run", "operator", "plan_id", "plan_target")
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read aloud or typed from a phone


class PlanRefused(Exception):
    """An approval or denial that cannot be carried out; the message is one line saying why."""


class UnknownPlan(PlanRefused):
    """No plan has this id in this archive (bad input, not a refusal of a real plan)."""


def new_id() -> str:
    return "pl-" + "".join(secrets.choice(_ALPHABET) for _ in range(8))


def expiry(severity: str, created: dt.datetime, minutes: float = 0.0) -> dt.datetime:
    """``minutes`` when given (> 0), else the severity's response target (P1 15 min ... P4 24 h)."""
    return created + (dt.timedelta(minutes=minutes) if minutes and minutes > 0 else TARGETS.get(severity, TARGETS["P2"]))


def digest(evidence: Any) -> str:
    """A stable short digest of the evidence a plan rests on (the record keeps the evidence itself)."""
    text = json.dumps(evidence, sort_keys=True, default=str, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def make(*, runbook: str, incident_id: str, severity: str, action: str, target: str, causes: list[str],
         parameters: Mapping[str, Any], evidence: Any, expires_minutes: float = 0.0) -> dict[str, Any]:
    """A pending plan for a recommended action (its ``parameters``: the run's own, raw and masked)."""
    created = utcnow()
    kept = {k: (redact.mask_url(v) if isinstance(v, str) else v) for k, v in parameters.items() if k not in RUN_OWN}
    return {
        "id": new_id(), "runbook": runbook, "incident_id": incident_id, "severity": severity,
        "action": action, "target": target, "causes": list(causes), "parameters": redact.scrub_obj(kept),
        "evidence_digest": digest(evidence), "created_at": iso(created),
        "expires_at": iso(expiry(severity, created, expires_minutes)), "status": PENDING,
    }


# -- the store ------------------------------------------------------------------------------------
_SCHEMA = """
CREATE TABLE IF NOT EXISTS plans (
    id TEXT PRIMARY KEY, incident_id TEXT NOT NULL, runbook TEXT NOT NULL, severity TEXT NOT NULL,
    action TEXT NOT NULL, target TEXT NOT NULL, record TEXT NOT NULL, created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL, status TEXT NOT NULL, decided_by TEXT, decided_at TEXT, reason TEXT,
    outcome_record TEXT, plan TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS plans_incident ON plans(incident_id);
"""


@dataclass
class Plan:
    """A plan as the store knows it: the record's plan plus what happened to it since."""

    id: str
    incident_id: str
    runbook: str
    severity: str
    action: str
    target: str
    record: str
    created_at: str
    expires_at: str
    status: str
    decided_by: str | None
    decided_at: str | None
    reason: str | None
    outcome_record: str | None
    plan: dict[str, Any]

    @property
    def state(self) -> str:
        """The status, with a pending plan past its expiry reported as expired."""
        if self.status == PENDING and parse_time(self.expires_at) <= utcnow():
            return EXPIRED
        return self.status

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "plan"}
        return {**d, "state": self.state, "parameters": self.plan.get("parameters", {}),
                "causes": self.plan.get("causes", []), "evidence_digest": self.plan.get("evidence_digest")}


class PlanStore:
    """Plans of one folder archive, in ``<archive>/plans.sqlite`` (WAL; every call has a busy timeout)."""

    def __init__(self, archive: Path):
        self.archive = Path(archive)
        self.path = self.archive / STORE_NAME

    @contextlib.contextmanager
    def _db(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        if not write and not self.path.exists():
            raise UnknownPlan(f"no plans in {self.archive} (no {STORE_NAME})")
        self.archive.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=15, isolation_level=None)
        try:
            con.row_factory = sqlite3.Row
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(_SCHEMA)
            yield con
        finally:
            con.close()

    def register(self, summary: Mapping[str, Any], record_name: str) -> int:
        """Add the plans of a record just written; a plan already known is left as it is."""
        plans = summary.get("plans") or []
        if not plans:
            return 0
        with self._db(write=True) as con:
            for p in plans:
                con.execute(
                    "INSERT OR IGNORE INTO plans (id, incident_id, runbook, severity, action, target, record, "
                    "created_at, expires_at, status, plan) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (p["id"], p["incident_id"], p["runbook"], p["severity"], p["action"], p["target"], record_name,
                     p["created_at"], p["expires_at"], p.get("status", PENDING), json.dumps(p, default=str)))
        return len(plans)

    def get(self, plan_id: str) -> Plan:
        with self._db() as con:
            row = con.execute("SELECT * FROM plans WHERE id = ?", (plan_id,)).fetchone()
        if row is None:
            raise UnknownPlan(f"no plan {plan_id!r} in {self.archive}")
        return _plan(row)

    def of_incident(self, incident_id: str) -> list[Plan]:
        if not self.path.exists():
            return []
        with self._db() as con:
            rows = con.execute("SELECT * FROM plans WHERE incident_id = ? ORDER BY created_at, id",
                               (incident_id,)).fetchall()
        return [_plan(r) for r in rows]

    def pending(self) -> list[Plan]:
        if not self.path.exists():
            return []
        with self._db() as con:
            rows = con.execute("SELECT * FROM plans WHERE status = ? ORDER BY created_at", (PENDING,)).fetchall()
        return [p for p in map(_plan, rows) if p.state == PENDING]

    def claim(self, plan_id: str, operator: str, *, resolved_by: str | None = None) -> Plan:
        """Approve a pending plan for carrying out, atomically: exactly one caller wins.

        Raises :class:`PlanRefused` (nothing changed) when the plan is unknown, expired, denied,
        already approved or carried out, or when ``resolved_by`` names a record that resolved the
        incident since the plan was made."""
        plan = self.get(plan_id)
        if resolved_by:
            raise PlanRefused(f"plan {plan_id}: incident {plan.incident_id} was resolved since "
                              f"(record {resolved_by}); nothing to do")
        now = iso(utcnow())
        with self._db(write=True) as con:
            cur = con.execute("UPDATE plans SET status = ?, decided_by = ?, decided_at = ? "
                              "WHERE id = ? AND status = ? AND expires_at > ?",
                              (APPROVED, operator, now, plan_id, PENDING, now))
            won = cur.rowcount == 1
        if not won:
            raise PlanRefused(self._why_not(self.get(plan_id)))
        return self.get(plan_id)

    def deny(self, plan_id: str, operator: str, reason: str) -> Plan:
        now = iso(utcnow())
        with self._db(write=True) as con:
            cur = con.execute("UPDATE plans SET status = ?, decided_by = ?, decided_at = ?, reason = ? "
                              "WHERE id = ? AND status = ?", (DENIED, operator, now, reason, plan_id, PENDING))
            won = cur.rowcount == 1
        if not won:
            raise PlanRefused(self._why_not(self.get(plan_id)))
        return self.get(plan_id)

    def finish(self, plan_id: str, status: str, reason: str, outcome_record: str | None) -> Plan:
        """Record how an approved plan ended (executed, refused, failed)."""
        if status not in FINAL:
            raise ValueError(f"not a final plan status: {status}")
        with self._db(write=True) as con:
            con.execute("UPDATE plans SET status = ?, reason = ?, outcome_record = ? WHERE id = ? AND status = ?",
                        (status, reason, outcome_record, plan_id, APPROVED))
        return self.get(plan_id)

    @staticmethod
    def _why_not(plan: Plan) -> str:
        state = plan.state
        if state == EXPIRED:
            return f"plan {plan.id} expired at {plan.expires_at}: re-run the runbook for a fresh plan"
        if state == DENIED:
            return f"plan {plan.id} was denied by {plan.decided_by} at {plan.decided_at}: {plan.reason}"
        if state == APPROVED:
            return f"plan {plan.id} was already approved by {plan.decided_by} at {plan.decided_at} (being carried out)"
        return (f"plan {plan.id} was already carried out ({state}) after approval by {plan.decided_by} at "
                f"{plan.decided_at}" + (f": record {plan.outcome_record}" if plan.outcome_record else ""))


def _plan(row: sqlite3.Row) -> Plan:
    d = dict(row)
    d["plan"] = json.loads(d["plan"])
    return Plan(**d)


@contextlib.contextmanager
def target_lock(archive: Path, runbook: str, target: str) -> Iterator[None]:
    """Plans on one target run one after the other (an exclusive file lock beside the archive)."""
    folder = Path(archive) / LOCKS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(f"{runbook}\0{target}".encode()).hexdigest()[:24]
    with open(folder / f"{name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes, also when the process dies
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
