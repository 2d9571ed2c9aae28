"""What the checklist needs to know about one incident, read once from the archive: its records'
summaries in order, its plans, how far it has come (investigating → identified → resolved), its
timeline, the people who took part and the runbook's permanent fixes (the post-mortem's action items)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

from smartops_nb import catalog
from smartops_nb.records.archive import Archive

from .timeline import resolved_at, timeline

INVESTIGATING, IDENTIFIED, RESOLVED = "investigating", "identified", "resolved"
STAGES = (INVESTIGATING, IDENTIFIED, RESOLVED)


@dataclass
class Incident:
    incident_id: str
    runbook: str
    title: str
    severity: str
    environment: str
    detected_at: str
    stage: str | None                     # None: nothing confirmed yet
    resolved: dt.datetime | None
    timeline: list[tuple[str, str]]
    causes: list[str]
    diagnosis: str
    actions: list[str]
    participants: list[str]               # operators and approvers, as the records name them
    fixes: list[str]
    records: list[str] = field(default_factory=list)
    pages: dict[str, str] = field(default_factory=dict)

    @property
    def headline(self) -> str:
        return f"[{self.severity}] {self.title or self.runbook} ({self.environment}, incident {self.incident_id})"


def stage_of(summaries: list[dict[str, Any]], resolved: dt.datetime | None) -> str | None:
    """resolved once a later run confirms nothing; identified once a mitigation was executed; investigating
    once a run confirmed a cause; None before."""
    if resolved is not None:
        return RESOLVED
    if any(a.get("mode") == "executed" for s in summaries for a in s.get("actions") or []):
        return IDENTIFIED
    if any((s.get("diagnosis") or {}).get("confirmed") for s in summaries):
        return INVESTIGATING
    return None


def read(archive: Archive, incident_id: str, public_url: str = "") -> Incident:
    """The incident from the archive's index and records (LookupError when it has no record)."""
    rows = sorted(archive.list(limit=0, incident_id=incident_id),
                  key=lambda r: (r["started_at"], r["name"]))
    named = [(r["name"], archive.read_summary(r["name"])) for r in rows]
    if not named:
        raise LookupError(f"no record of incident {incident_id!r}")
    summaries = [s for _, s in named]
    plans = [p.to_dict() for p in archive.plan_store().of_incident(incident_id)]
    evidence = [SimpleNamespace(summary=s) for s in summaries]
    end = resolved_at(evidence)
    first = summaries[0]
    confirmed = next((s["diagnosis"] for s in summaries if (s.get("diagnosis") or {}).get("confirmed")), {})
    people = [s.get("operator") for s in summaries] + [a.get("approved_by") for s in summaries
                                                       for a in s.get("actions") or []]
    people += [p.get("decided_by") for p in plans if p.get("status") != "denied"]
    rb = catalog.RUNBOOKS.get(first["runbook"])
    base = public_url.rstrip("/")
    pages = {"incident": f"{base}/incidents/{quote(incident_id, safe='')}",
             "postmortem": f"{base}/incidents/{quote(incident_id, safe='')}/postmortem"} if base else {}
    return Incident(
        incident_id=incident_id, runbook=first["runbook"], title=first.get("title", ""),
        severity=first.get("severity", ""), environment=first.get("environment", ""),
        detected_at=first.get("detected_at", ""), stage=stage_of(summaries, end), resolved=end,
        timeline=timeline(evidence, plans), causes=list(confirmed.get("causes", [])),
        diagnosis=confirmed.get("summary", ""),
        actions=[f"{a['action']} on {a['target']} ({a.get('operator', '')})" for s in summaries
                 for a in s.get("actions") or [] if a.get("mode") == "executed"],
        participants=list(dict.fromkeys(p for p in people if p)),
        fixes=list(rb.permanent_fixes) if rb else [], records=[n for n, _ in named], pages=pages)


def timeline_text(inc: Incident) -> list[str]:
    """The timeline as lines (what the tracker issue and the e-mails carry)."""
    return [f"{t} UTC - {e}" for t, e in inc.timeline]
