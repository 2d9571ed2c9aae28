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
import time
from dataclasses import dataclass, field
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
_COLUMNS = """
    id TEXT PRIMARY KEY, incident_id TEXT NOT NULL, runbook TEXT NOT NULL, severity TEXT NOT NULL,
    action TEXT NOT NULL, target TEXT NOT NULL, record TEXT NOT NULL, created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL, status TEXT NOT NULL, decided_by TEXT, decided_at TEXT, reason TEXT,
    outcome_record TEXT, plan TEXT NOT NULL"""
_NAMES = tuple(c.split()[0] for c in _COLUMNS.split(","))
#: One table, the same in SQLite (``plans.sqlite`` beside a folder archive) and in the PostgreSQL
#: index's schema (a shared archive: every machine approves from it).
DDL = f"CREATE TABLE IF NOT EXISTS plans ({_COLUMNS});\nCREATE INDEX IF NOT EXISTS plans_incident ON plans(incident_id);\n" + (
    # who decided, as authenticated (one row per person and verb: the two-person rule counts them)
    "CREATE TABLE IF NOT EXISTS plan_decisions (plan_id TEXT NOT NULL, verb TEXT NOT NULL, issuer TEXT NOT NULL, "
    "subject TEXT NOT NULL, name TEXT NOT NULL, how TEXT NOT NULL, at TEXT NOT NULL, "
    "PRIMARY KEY (plan_id, verb, issuer, subject));\n")
_DECISION_NAMES = ("plan_id", "verb", "issuer", "subject", "name", "how", "at")
#: How long an approval waits for another plan on the same target to finish (then it is refused).
LOCK_WAIT_S = 1800.0


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
    decisions: list[dict[str, Any]] = field(default_factory=list)  # who approved/denied, as authenticated

    @property
    def approvals(self) -> list[dict[str, Any]]:
        return [d for d in self.decisions if d["verb"] == "approve"]

    @property
    def state(self) -> str:
        """The status, with a pending plan past its expiry reported as expired."""
        if self.status == PENDING and parse_time(self.expires_at) <= utcnow():
            return EXPIRED
        return self.status

    @property
    def lock_key(self) -> str:
        """Plans with the same key never run at once: one runbook's action on one target."""
        return "smartops-plan-target:" + hashlib.sha256(f"{self.runbook}\0{self.target}".encode()).hexdigest()[:24]

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k not in ("plan", "decisions")}
        return {**d, "state": self.state, "parameters": self.plan.get("parameters", {}),
                "causes": self.plan.get("causes", []), "evidence_digest": self.plan.get("evidence_digest"),
                "decisions": list(self.decisions)}


class PlanStore:
    """What happened to the plans of one archive. Every change is one conditional ``UPDATE``, so of
    two machines approving one plan exactly one wins. An archive's own is
    :meth:`smartops_nb.records.archive.Archive.plan_store`."""

    where = ""
    _ph = "?"  # the driver's placeholder; queries below are written with "?"

    @contextlib.contextmanager
    def _db(self, write: bool = False) -> Iterator[Any]:  # pragma: no cover - abstract
        raise NotImplementedError
        yield

    def _exists(self) -> bool:
        return True

    def _run(self, sql: str, args: tuple = (), *, write: bool = False, fetch: str = "", con: Any = None) -> Any:
        """One statement (on ``con`` when given: the caller's transaction); ``fetch`` "one"/"all"
        returns rows as dicts, else the row count."""
        with contextlib.nullcontext(con) if con is not None else self._db(write=write) as con:
            cur = con.execute(sql.replace("?", self._ph), args)
            if fetch == "one":
                row = cur.fetchone()
                return None if row is None else dict(row)
            if fetch == "all":
                return [dict(r) for r in cur.fetchall()]
            return cur.rowcount

    def _con_of(self, tx: Any) -> Any:
        """The connection of an index transaction when this store lives in that index, else None."""
        return None

    def register(self, summary: Mapping[str, Any], record_name: str, *, tx: Any = None) -> int:
        """Add the plans of a record just written (inside the index transaction ``tx`` when the plans
        live in that index: the record is indexed with its plans or not at all); a plan already known
        is left as it is."""
        plans = summary.get("plans") or []
        self.insert([{"id": p["id"], "incident_id": p["incident_id"], "runbook": p["runbook"],
                      "severity": p["severity"], "action": p["action"], "target": p["target"], "record": record_name,
                      "created_at": p["created_at"], "expires_at": p["expires_at"], "status": p.get("status", PENDING),
                      "plan": json.dumps(p, default=str)} for p in plans], tx=tx)
        return len(plans)

    def insert(self, rows: list[Mapping[str, Any]], *, decisions: list[Mapping[str, Any]] = (),
               tx: Any = None) -> None:
        """Store rows as they are (:meth:`rows` and :meth:`decision_rows` of another store: ``archive
        migrate``); known ids and decisions are kept."""
        con = self._con_of(tx)
        for table, names, found in (("plans", _NAMES, rows), ("plan_decisions", _DECISION_NAMES, decisions)):
            for r in found:
                cols = [c for c in names if c in r]
                self._run(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
                          "ON CONFLICT DO NOTHING", tuple(r[c] for c in cols), write=True, con=con)

    def rows(self) -> list[dict[str, Any]]:
        """Every plan as stored (the ``plan`` column as its JSON text)."""
        return self._run("SELECT * FROM plans ORDER BY created_at, id", fetch="all") if self._exists() else []

    def decision_rows(self) -> list[dict[str, Any]]:
        """Every decision as stored: who approved or denied which plan, as authenticated."""
        return self._run("SELECT * FROM plan_decisions ORDER BY at, plan_id", fetch="all") if self._exists() else []

    def get(self, plan_id: str) -> Plan:
        row = self._run("SELECT * FROM plans WHERE id = ?", (plan_id,), fetch="one") if self._exists() else None
        if row is None:
            raise UnknownPlan(f"no plan {plan_id!r} in {self.where}")
        return self._with_decisions([_plan(row)])[0]

    def of_incident(self, incident_id: str) -> list[Plan]:
        if not self._exists():
            return []
        return self._with_decisions([_plan(r) for r in self._run(
            "SELECT * FROM plans WHERE incident_id = ? ORDER BY created_at, id", (incident_id,), fetch="all")])

    def _with_decisions(self, found: list[Plan]) -> list[Plan]:
        for p in found:
            p.decisions = self._run("SELECT verb, issuer, subject, name, how, at FROM plan_decisions "
                                    "WHERE plan_id = ? ORDER BY at", (p.id,), fetch="all")
        return found

    def _decided(self, plan_id: str, verb: str, who: Mapping[str, Any] | None) -> bool:
        """Keep who decided (False: this person already did ``verb`` on this plan)."""
        if not who:
            return True
        return self._run("INSERT INTO plan_decisions (plan_id, verb, issuer, subject, name, how, at) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                         (plan_id, verb, who["issuer"], who["subject"], who["name"], who["how"], iso(utcnow())),
                         write=True) == 1

    def pending(self) -> list[Plan]:
        if not self._exists():
            return []
        rows = self._run("SELECT * FROM plans WHERE status = ? ORDER BY created_at", (PENDING,), fetch="all")
        return [p for p in map(_plan, rows) if p.state == PENDING]

    def claim(self, plan_id: str, operator: str, *, resolved_by: str | None = None,
              who: Mapping[str, Any] | None = None, needed: int = 1) -> Plan:
        """Approve a pending plan for carrying out, atomically: exactly one caller wins.

        ``who``: the approver's identity (subject, issuer, name, how), kept with the plan.
        ``needed`` > 1 (the two-person rule): each different person's approval is kept; the plan stays
        pending (returned so) until the ``needed``-th, which claims it if it is still within expiry.
        Raises :class:`PlanRefused` (nothing changed) when the plan is unknown, expired, denied,
        already approved or carried out, approved already by this same person, or when ``resolved_by``
        names a record that resolved the incident since the plan was made."""
        plan = self.get(plan_id)
        if resolved_by:
            raise PlanRefused(f"plan {plan_id}: incident {plan.incident_id} was resolved since "
                              f"(record {resolved_by}); nothing to do")
        if needed > 1:
            if plan.state != PENDING:
                raise PlanRefused(self._why_not(plan))
            if not self._decided(plan_id, "approve", who):
                raise PlanRefused(f"plan {plan_id}: {who['name'] if who else operator} already approved it; "
                                  f"it needs {needed} different people")
            plan = self.get(plan_id)
            if len(plan.approvals) < needed:
                return plan
        now = iso(utcnow())
        won = self._run("UPDATE plans SET status = ?, decided_by = ?, decided_at = ? "
                        "WHERE id = ? AND status = ? AND expires_at > ?",
                        (APPROVED, operator, now, plan_id, PENDING, now), write=True) == 1
        if not won:
            raise PlanRefused(self._why_not(self.get(plan_id)))
        if needed <= 1:
            self._decided(plan_id, "approve", who)
        return self.get(plan_id)

    def deny(self, plan_id: str, operator: str, reason: str, *, who: Mapping[str, Any] | None = None) -> Plan:
        now = iso(utcnow())
        won = self._run("UPDATE plans SET status = ?, decided_by = ?, decided_at = ?, reason = ? "
                        "WHERE id = ? AND status = ?", (DENIED, operator, now, reason, plan_id, PENDING),
                        write=True) == 1
        if not won:
            raise PlanRefused(self._why_not(self.get(plan_id)))
        self._decided(plan_id, "deny", who)
        return self.get(plan_id)

    def release(self, plan_id: str, why: str) -> Plan:
        """Give an approved plan back (pending again, approvable) when it could not be handed on,
        e.g. the queue refused the job; nothing was carried out."""
        self._run("UPDATE plans SET status = ?, decided_by = NULL, decided_at = NULL, reason = ? "
                  "WHERE id = ? AND status = ?", (PENDING, why, plan_id, APPROVED), write=True)
        return self.get(plan_id)

    def finish(self, plan_id: str, status: str, reason: str, outcome_record: str | None) -> Plan:
        """Record how an approved plan ended (executed, refused, failed)."""
        if status not in FINAL:
            raise ValueError(f"not a final plan status: {status}")
        self._run("UPDATE plans SET status = ?, reason = ?, outcome_record = ? WHERE id = ? AND status = ?",
                  (status, reason, outcome_record, plan_id, APPROVED), write=True)
        return self.get(plan_id)

    def target_lock(self, plan: Plan, wait: float = LOCK_WAIT_S) -> "contextlib.AbstractContextManager[None]":
        """Held while a plan is carried out: plans on one target run one after the other."""
        raise NotImplementedError

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


class SqlitePlanStore(PlanStore):
    """Plans of one folder archive, in ``<archive>/plans.sqlite`` (WAL; every call has a busy timeout);
    the target lock is an exclusive file lock in ``<archive>/.locks``."""

    def __init__(self, folder: Path):
        self.archive = Path(folder)
        self.path = self.archive / STORE_NAME
        self.where = str(self.archive)

    def _exists(self) -> bool:
        return self.path.exists()

    @contextlib.contextmanager
    def _db(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        self.archive.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=15, isolation_level=None)
        try:
            con.row_factory = sqlite3.Row
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(DDL)
            yield con
        finally:
            con.close()

    @contextlib.contextmanager
    def target_lock(self, plan: Plan, wait: float = LOCK_WAIT_S) -> Iterator[None]:
        folder = self.archive / LOCKS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{plan.lock_key.rsplit(':', 1)[-1]}.lock", "w") as f:
            _wait_for(lambda: _try_flock(f), wait, plan)  # released when the file closes or the process dies
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


class PostgresPlanStore(PlanStore):
    """Plans of a shared archive, in its PostgreSQL index (schema ``smartops_archive``, table
    ``plans``): a plan written on one machine is approved from any other. The target lock is a
    session advisory lock, released when its connection closes (also when the process dies)."""

    _ph = "%s"

    def __init__(self, index):
        self.index = index
        self.where = index.label

    def _con_of(self, tx: Any) -> Any:
        return getattr(tx, "con", None)

    @contextlib.contextmanager
    def _db(self, write: bool = False) -> Iterator[Any]:
        from .entries import IndexMissing

        try:
            with self.index.connection(create=write) as con:
                yield con
        except IndexMissing:
            raise UnknownPlan(f"no plans in {self.where} (nothing was archived there yet)") from None

    @contextlib.contextmanager
    def target_lock(self, plan: Plan, wait: float = LOCK_WAIT_S) -> Iterator[None]:
        key = int.from_bytes(hashlib.sha256(plan.lock_key.encode()).digest()[:8], "big", signed=True)
        with self.index.connection(create=True) as con:
            _wait_for(lambda: con.execute("SELECT pg_try_advisory_lock(%s) AS ok", (key,)).fetchone()["ok"],
                      wait, plan)
            try:
                yield
            finally:
                con.execute("SELECT pg_advisory_unlock(%s)", (key,))


def _try_flock(f) -> bool:
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _wait_for(take, wait: float, plan: Plan) -> None:
    """Poll ``take()`` until it is true; after ``wait`` s the plan is refused (another holds its target)."""
    deadline = time.monotonic() + wait
    while not take():
        if time.monotonic() >= deadline:
            raise PlanRefused(f"plan {plan.id}: another plan on {plan.target} held its lock for {wait:.0f} s")
        time.sleep(0.25)


def _plan(row: Mapping[str, Any]) -> Plan:
    d = dict(row)
    d["plan"] = json.loads(d["plan"])
    return Plan(**d)
