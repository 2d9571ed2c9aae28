"""Severity → response-time target and escalation ladder, measured against ``detected_at``.

From the seed runbook:

* Response time: P1 < 15 min, P2 < 1 h, P3 < 4 h, P4 < 24 h.
* Escalation: the P1 runbooks say "not resolved in 15 minutes → page the senior engineer, in 30
  minutes → engage the CTO"; the Emergency Contacts table gives the general ladder: senior
  engineer 15 min, DevOps lead 30 min, CTO 1 hour.

The ladder per severity (:data:`ESCALATION`) is derived from those two:

* **P1** — the P1 runbook text, with the DevOps lead from the contacts table at 30 min beside the
  CTO: senior engineer +15 min, DevOps lead +30 min, CTO +30 min.
* **P2** — the contacts table as written (the general case): senior engineer +15 min, DevOps lead
  +30 min, CTO +1 h (the CTO is engaged when the P2 response time is missed).
* **P3 / P4** — nobody is paged while the response time still runs; when it is missed the senior
  engineer is paged, at twice the target the DevOps lead. The CTO is not paged for minor issues.

The on-call engineer is the primary responder (paged at detection) and is not an escalation step.
Contacts come from a ``contacts`` section of the parameters file (handed to the kernel by the
runner in ``SMARTOPS_CONTACTS`` as JSON); missing roles keep the seed's defaults.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
from typing import Any, Mapping

from .contract import CONTACTS_ENV
from .params import iso, parse_time

TARGETS: dict[str, dt.timedelta] = {
    "P1": dt.timedelta(minutes=15), "P2": dt.timedelta(hours=1),
    "P3": dt.timedelta(hours=4), "P4": dt.timedelta(hours=24),
}

#: (role, delay after detection) per severity; see the module docstring for where each comes from.
ESCALATION: dict[str, tuple[tuple[str, dt.timedelta], ...]] = {
    "P1": (("senior_engineer", dt.timedelta(minutes=15)), ("devops_lead", dt.timedelta(minutes=30)),
           ("cto", dt.timedelta(minutes=30))),
    "P2": (("senior_engineer", dt.timedelta(minutes=15)), ("devops_lead", dt.timedelta(minutes=30)),
           ("cto", dt.timedelta(hours=1))),
    "P3": (("senior_engineer", dt.timedelta(hours=4)), ("devops_lead", dt.timedelta(hours=8))),
    "P4": (("senior_engineer", dt.timedelta(hours=24)), ("devops_lead", dt.timedelta(hours=48))),
}

#: The seed's Emergency Contacts table.
DEFAULT_CONTACTS: dict[str, dict[str, str]] = {
    "on_call_engineer": {"role": "On-Call Engineer", "name": "Rotation", "contact": "PagerDuty"},
    "senior_engineer": {"role": "Senior Engineer", "name": "TBD", "contact": "TBD"},
    "devops_lead": {"role": "DevOps Lead", "name": "TBD", "contact": "TBD"},
    "cto": {"role": "CTO", "name": "TBD", "contact": "TBD"},
}


def role_key(text: str) -> str:
    """``"Senior Engineer"``, ``senior-engineer`` → ``senior_engineer``."""
    return re.sub(r"[^a-z0-9]+", "_", str(text).lower()).strip("_")


def contacts(section: Any = None) -> dict[str, dict[str, str]]:
    """The seed's contacts overridden by a parameters file's ``contacts`` section.

    Accepted forms: ``{role: {name, contact}}``, ``{role: "contact"}`` or a list of
    ``{role, name, contact}`` rows (the seed's table). Unknown roles are kept (shown, never paged).
    """
    out = {k: dict(v) for k, v in DEFAULT_CONTACTS.items()}
    if not section:
        return out
    rows = section if isinstance(section, list) else [
        {"role": k, **(v if isinstance(v, Mapping) else {"contact": v})} for k, v in dict(section).items()]
    for row in rows:
        if not isinstance(row, Mapping) or not row.get("role"):
            raise ValueError(f"contacts: each entry needs a role, got {row!r}")
        key = role_key(row["role"])
        base = out.get(key, {"role": str(row["role"]).replace("_", " ").title(), "name": "TBD", "contact": "TBD"})
        out[key] = {**base, **{k: str(v) for k, v in row.items() if k in ("name", "contact")}}
    return out


def contacts_from_env() -> dict[str, dict[str, str]]:
    """Inside the kernel: the runner's contacts, or the seed's defaults (plain papermill, JupyterLab)."""
    raw = os.environ.get(CONTACTS_ENV)
    try:
        return contacts(json.loads(raw)) if raw else contacts()
    except (ValueError, TypeError):
        return contacts()


def assess(severity: str, detected_at: str, *, now: str, responded_at: str | None,
           resolved: bool, people: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, Any]:
    """Where the response stands at ``now``.

    ``responded_at`` is the first executed mitigation, else the end of the run (the investigation
    delivered); ``resolved`` says the incident no longer needs anyone (nothing confirmed, or every
    mitigation executed), so escalations not yet reached are not needed.
    """
    people = people or contacts()
    detected = parse_time(detected_at, name="detected_at")
    current = parse_time(now, name="now")
    target = TARGETS.get(severity, TARGETS["P4"])
    due = detected + target
    responded = parse_time(responded_at, name="responded_at") if responded_at else None
    met = None if responded is None else responded <= due
    if met is None and current > due:
        met = False  # still nothing done and the time is up
    steps = []
    for role, delay in ESCALATION.get(severity, ESCALATION["P4"]):
        at = detected + delay
        if resolved:  # did its time come before the response ended the incident?
            status = "overdue" if at <= (responded or current) else "not needed"
        else:
            status = "overdue" if at <= current else "due"
        who = people.get(role, {"role": role, "name": "TBD", "contact": "TBD"})
        steps.append({"role": who["role"], "name": who.get("name", ""), "contact": who.get("contact", ""),
                      "after_minutes": int(delay.total_seconds() // 60), "due_at": iso(at), "status": status})
    return {
        "severity": severity, "target_minutes": int(target.total_seconds() // 60), "detected_at": iso(detected),
        "due_at": iso(due), "responded_at": iso(responded) if responded else None, "met": met,
        "elapsed_minutes": round((current - detected).total_seconds() / 60, 1), "assessed_at": iso(current),
        "resolved": resolved, "escalations": steps, "primary": dict(people.get("on_call_engineer", {})),
    }


def verdict(r: Mapping[str, Any]) -> str:
    """One line: ``met (responded 4 min after detection, target 15 min)``."""
    target = f"target {_minutes(r['target_minutes'])}"
    if r.get("responded_at"):
        took = (parse_time(r["responded_at"]) - parse_time(r["detected_at"])).total_seconds() / 60
        return f"{'met' if r['met'] else 'MISSED'} (responded {took:.0f} min after detection, {target})"
    return f"MISSED (no response yet, {target})" if r.get("met") is False else f"open ({target})"


def _minutes(m: int) -> str:
    return f"{m // 60} h" if m >= 60 and m % 60 == 0 else f"{m} min"
