"""The incident's timeline from its records: what the post-mortem draft and the incident tracker both show.

The records are the evidence: every run of one ``incident_id`` merges into the seed's milestones
(detected, investigation started, root cause identified, mitigation applied, resolved). Each record
is anything with a ``summary`` (the record's ``metadata.smartops``).
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from smartops_nb.params import parse_time


def _t(at: str) -> dt.datetime:
    return parse_time(at, name="time")


def _approval(a: dict[str, Any]) -> str:
    """How an executed action was approved, for a person reading the post-mortem."""
    if a.get("plan_id"):
        return f" (plan {a['plan_id']} approved by {a.get('approved_by', '')})"
    return " (approved interactively)" if a.get("approved_by") else ""


def timeline(records: list[Any], plans: list[dict[str, Any]] = ()) -> list[tuple[str, str]]:
    """(time, event) in time order: the seed's milestones from the records' own timelines, and what
    became of the plans a person was asked to approve."""
    events: list[tuple[dt.datetime, str]] = []
    first = records[0].summary
    events.append((_t(first["detected_at"]), "Incident detected"))
    events.append((_t(first["started_at"]), f"Investigation started ({first['runbook']} runbook, "
                                            f"operator {first.get('operator', '')})"))
    identified = False
    for r in records:
        s = r.summary
        diag = s.get("diagnosis") or {}
        reached = next((_t(t["at"]) for t in s.get("timeline", []) if t["event"].startswith("diagnosis reached")),
                       None)
        if diag.get("confirmed") and not identified and reached:
            events.append((reached, f"Root cause identified: {', '.join(diag.get('causes', []))}"))
            identified = True
        for a in s.get("actions", []):
            if a["mode"] in ("executed", "failed"):
                who = f"by {a.get('operator', '')}{_approval(a)}"
                events.append((_t(a["at"]), f"Mitigation {'applied' if a['mode'] == 'executed' else 'FAILED'}: "
                                            f"{a['action']} on {a['target']} {who}"))
            elif a["mode"] == "refused":
                events.append((_t(a["at"]), f"Mitigation refused: {a['action']} on {a['target']}: {a['reason']}"))
    for p in plans:
        events.append((_t(p["created_at"]), f"Plan {p['id']} proposed: {p['action']} on {p['target']} "
                                            f"(approvable until {p['expires_at']})"))
        if p.get("decided_at"):
            how = "denied" if p["status"] == "denied" else "approved"
            events.append((_t(p["decided_at"]), f"Plan {p['id']} {how} by {p.get('decided_by')}: {p['state']}"
                                                + (f" ({p['reason']})" if p.get("reason") else "")))
    end = resolved_at(records)
    if end is not None:
        events.append((end, f"Incident resolved: a later {first['runbook']} run confirms nothing"))
    return [(t.strftime("%Y-%m-%d %H:%M:%S"), e) for t, e in sorted(events, key=lambda x: x[0])]


def resolved_at(records: list[Any]) -> dt.datetime | None:
    """End of the first run of the same runbook, after a confirmed diagnosis, that confirms nothing."""
    identified = False
    for r in records:
        diag = r.summary.get("diagnosis") or {}
        identified = identified or bool(diag.get("confirmed"))
        if identified and not diag.get("confirmed") and not diag.get("inconclusive") \
                and r.summary.get("status") == "completed" \
                and r.summary["runbook"] == records[0].summary["runbook"]:
            return _t(r.summary.get("finished_at") or r.summary["started_at"])
    return None
