"""One incident as a whole: every record of one ``incident_id`` in order, its plans and their fate,
where the response stands against the seed's target, and whether it is open, mitigated or resolved.

An alert's incident is one firing episode (:mod:`smartops_nb.alerts.routes`): when the same alert
fires again after it resolved, the new incident is a *recurrence of* the previous one, and the
previous one *recurred as* the new one (:func:`recurrence`, shown by ``incident show`` and the page).

``smartops incident show ID`` and ``smartops incident list --open`` print this; ``smartops
postmortem --incident ID`` drafts the post-mortem from the same records and plans.
"""
from __future__ import annotations

from typing import Any

from smartops_nb.people.identity import describe
from smartops_nb import response
from smartops_nb.alerts.routes import alert_key_of
from smartops_nb.postincident import checklist
from smartops_nb.params import iso, utcnow
from smartops_nb.records.archive import Archive
from smartops_nb.records.plans import PENDING

OPEN, MITIGATED, RESOLVED = "open", "mitigated", "resolved"


class IncidentNotFound(LookupError):
    pass


def summaries(archive: Archive, incident_id: str) -> list[tuple[str, dict[str, Any]]]:
    """(record name, summary) of every record of the incident, oldest first."""
    rows = archive.list(limit=0, incident_id=incident_id)
    out = []
    for row in sorted(rows, key=lambda r: (r["started_at"], r["name"])):
        try:
            out.append((row["name"], archive.read_summary(row["name"])))
        except (OSError, ValueError):
            continue  # `archive verify` names a record that went missing or unreadable
    if not out:
        raise IncidentNotFound(f"no record of incident {incident_id!r} in {archive}")
    return out


def role(summary: dict[str, Any], confirmed_before: bool) -> str:
    """What a record was in the incident: the firing run, a mitigation, a confirming run, a re-check."""
    diag = summary.get("diagnosis") or {}
    if summary.get("parameters", {}).get("plan_id"):
        return "mitigation (plan)"
    if summary.get("mode") == "mitigate":
        return "mitigation"
    if confirmed_before and not diag.get("confirmed") and not diag.get("inconclusive") \
            and summary.get("status") == "completed":
        return "confirming run"
    return "investigation" if not confirmed_before else "re-check"


def status_of(entries: list[dict[str, Any]]) -> str:
    """resolved: a run after a confirmed one confirms nothing; mitigated: an action was executed
    since the last confirmation; else open."""
    state, confirmed = OPEN, False
    for e in entries:
        diag = e["diagnosis"]
        if diag.get("confirmed"):
            confirmed, state = True, OPEN
        elif confirmed and e["role"] == "confirming run":
            state = RESOLVED
        if any(a["mode"] == "executed" for a in e["actions"]) and state != RESOLVED:
            state = MITIGATED
    return state if confirmed else (RESOLVED if entries and entries[-1]["status"] == "completed" else OPEN)


def recurrence(archive: Archive, incident_id: str) -> dict[str, str | None]:
    """The episodes of the same alert just before and after this one: ``recurrence_of`` (the incident
    this one repeats) and ``recurred_as`` (the next); None when there is none, or the id is no episode's."""
    key = alert_key_of(incident_id)
    out: dict[str, str | None] = {"recurrence_of": None, "recurred_as": None}
    if key is None:
        return out
    episodes = sorted({r["incident_id"] for r in archive.list(limit=0)
                       if r["incident_id"] != incident_id and alert_key_of(r["incident_id"]) == key})
    # the ids end in the episode's startsAt (YYYYMMDDTHHMMSSZ): text order is time order
    out["recurrence_of"] = next((i for i in reversed(episodes) if i < incident_id), None)
    out["recurred_as"] = next((i for i in episodes if i > incident_id), None)
    return out


def show(archive: Archive, incident_id: str, *, detail: bool = True) -> dict[str, Any]:
    """The incident: records in order with their role, plans and their fate, status, response, and
    (``detail``: one incident's page, not a list of many) the post-incident checklist and the
    recurrences it is linked to."""
    records = summaries(archive, incident_id)
    entries, confirmed = [], False
    for name, s in records:
        diag = s.get("diagnosis") or {}
        entries.append({
            "record": name, "runbook": s.get("runbook"), "role": role(s, confirmed), "status": s.get("status"),
            "started_at": s.get("started_at"), "finished_at": s.get("finished_at"), "operator": s.get("operator"),
            "diagnosis": {k: diag.get(k) for k in ("confirmed", "causes", "summary", "inconclusive")},
            "actions": [{k: a.get(k) for k in ("action", "target", "mode", "at", "operator", "reason", "plan_id",
                                               "approved_by")} for a in s.get("actions", [])],
            "plan_id": s.get("parameters", {}).get("plan_id") or None,
        })
        confirmed = confirmed or bool(diag.get("confirmed"))
    first = records[0][1]
    plans = [p.to_dict() for p in archive.plan_store().of_incident(incident_id)]
    state = status_of(entries)
    executed = [a["at"] for e in entries for a in e["actions"] if a["mode"] == "executed"]
    end = next((e["finished_at"] for e in entries if e["role"] == "confirming run"), None) if state == RESOLVED else None
    resp = response.assess(first.get("severity", "P2"), first.get("detected_at") or first.get("started_at"),
                           now=end or iso(utcnow()), responded_at=executed[0] if executed else entries[0]["finished_at"],
                           resolved=state == RESOLVED)
    return {"incident_id": incident_id, "runbook": first.get("runbook"), "severity": first.get("severity"),
            "environment": first.get("environment"), "detected_at": first.get("detected_at"), "status": state,
            "records": entries, "plans": plans, "pending_plans": [p["id"] for p in plans if p["state"] == PENDING],
            "response": resp, "checklist": checklist.state(archive, incident_id) if detail else [],
            **(recurrence(archive, incident_id) if detail else {})}


def open_incidents(archive: Archive, limit: int = 0) -> list[dict[str, Any]]:
    """Incidents with a pending plan, or whose confirmed diagnosis no later run has cleared."""
    rows = archive.list(limit=0)
    ids = list(dict.fromkeys(r["incident_id"] for r in rows if r["incident_id"]))  # newest first
    out = []
    for incident_id in ids:
        try:
            inc = show(archive, incident_id, detail=False)
        except IncidentNotFound:
            continue
        if inc["pending_plans"] or inc["status"] != RESOLVED and any(e["diagnosis"]["confirmed"]
                                                                      for e in inc["records"]):
            out.append(inc)
            if limit and len(out) >= limit:
                break
    return out


def text(inc: dict[str, Any]) -> str:
    """The incident for a terminal: one line per record and per plan, in time order."""
    lines = [f"incident {inc['incident_id']} [{inc['severity']}] {inc['runbook']} ({inc['environment']}): "
             f"{inc['status'].upper()}",
             f"detected {inc['detected_at']}; response: {response.verdict(inc['response'])}"]
    if inc.get("recurrence_of"):
        lines.append(f"recurrence of {inc['recurrence_of']} (the same alert fired again after it resolved)")
    if inc.get("recurred_as"):
        lines.append(f"recurred as {inc['recurred_as']}")
    events = []
    for e in inc["records"]:
        d = e["diagnosis"]
        verdict = f"CONFIRMED {', '.join(d['causes'])}" if d["confirmed"] else (
            "inconclusive" if d.get("inconclusive") else "nothing confirmed")
        plan = f", plan {e['plan_id']}" if e["plan_id"] else ""
        events.append((e["started_at"], f"{e['role']}{plan}: {verdict} ({e['status']}) · {e['record']}"))
        for a in e["actions"]:
            by = f" approved by {a['approved_by']}" if a.get("approved_by") else ""
            events.append((a["at"], f"  {a['action']} on {a['target']}: {a['mode']}{by}"
                                    + (f" ({a['reason']})" if a["mode"] == "refused" else "")))
    for p in inc["plans"]:
        decided = f" by {p['decided_by']} at {p['decided_at']}" if p.get("decided_by") else ""
        outcome = f": {p['reason']}" if p.get("reason") else ""
        follow = f" · {p['outcome_record']}" if p.get("outcome_record") else ""
        events.append((p["created_at"], f"plan {p['id']}: {p['action']} on {p['target']} -> {p['state']}{decided}"
                                        f"{outcome}{follow}" + (f" (approve: smartops approve {p['id']} "
                                                                f"--operator NAME, until {p['expires_at']})"
                                                                if p["state"] == PENDING else "")))
        events += [(d["at"], f"  plan {p['id']} {d['verb']}d by {describe(d)}") for d in p.get("decisions") or []]
    lines += [f"  {at}  {what}" for at, what in sorted(events, key=lambda x: str(x[0]))]
    due = [x for x in inc["response"].get("escalations", []) if x["status"] in ("due", "overdue")]
    lines += [f"escalation {x['status']}: {x['role']} at {x['due_at']} ({x.get('contact', '')})" for x in due]
    if inc.get("checklist"):
        lines += ["post-incident checklist:", checklist.text(inc["checklist"])]
    return "\n".join(lines)
