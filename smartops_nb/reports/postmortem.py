"""Draft the seed's post-mortem (Markdown) from the incident records of one incident.

The records are the evidence: every run of one ``incident_id`` (investigate, mitigate,
confirming runs) merges into one timeline. What the records cannot know (impact unless the
``impact`` parameter gave it, lessons learned, owners) is left as ``_to fill in_``.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from smartops_nb import catalog
from smartops_nb.params import ParameterError, parse_time
from smartops_nb.postincident.timeline import _approval, _t, resolved_at, timeline  # noqa: F401  (re-exported)

TO_FILL = "_to fill in_"


class PostmortemError(ValueError):
    """The records cannot make one post-mortem (not records, or of different incidents)."""


@dataclass
class Evidence:
    path: Path
    sha256: str
    summary: dict[str, Any]
    charts: list[bytes] = field(default_factory=list)


def load(path: str | Path) -> Evidence:
    """One record: its summary, SHA-256 and the PNG charts of its outputs."""
    p = Path(path)
    try:
        data = p.read_bytes()
        nb = nbformat.reads(data.decode("utf-8"), as_version=4)
    except (OSError, ValueError) as e:
        raise PostmortemError(f"{p}: not a readable notebook ({e})") from None
    summary = nb.metadata.get("smartops")
    if not summary:
        raise PostmortemError(f"{p}: not an incident record (no metadata.smartops)")
    try:
        _check(summary)
        charts = [base64.b64decode(o["data"]["image/png"]) for c in nb.cells if c.cell_type == "code"
                  for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    except (ValueError, TypeError) as e:  # binascii.Error is a ValueError
        raise PostmortemError(f"{p}: not a usable incident record ({e})") from None
    return Evidence(p, hashlib.sha256(data).hexdigest(), dict(summary), charts)


def _check(s: Any) -> None:
    """What :func:`render` reads from a summary is there and its times parse; ValueError names what is not."""
    def need(d: Any, keys: tuple[str, ...], where: str) -> None:
        if not isinstance(d, dict):
            raise ValueError(f"{where} is not a mapping")
        missing = [k for k in keys if d.get(k) is None]
        if missing:
            raise ValueError(f"{where} has no {', '.join(missing)}")

    def when(d: dict[str, Any], key: str, where: str) -> None:
        try:
            parse_time(d[key], name=key)
        except ParameterError:
            raise ValueError(f"{where} {key} {d[key]!r} is not an ISO 8601 time") from None

    need(s, ("runbook", "started_at", "detected_at"), "metadata.smartops")
    for key in ("started_at", "detected_at") + (("finished_at",) if s.get("finished_at") else ()):
        when(s, key, "metadata.smartops")
    if not isinstance(s.get("diagnosis") or {}, dict):
        raise ValueError("metadata.smartops diagnosis is not a mapping")
    for t in s.get("timeline") or []:
        need(t, ("at", "event"), "a timeline entry")
        when(t, "at", "a timeline entry's")
    for act in s.get("actions") or []:
        need(act, ("action", "target", "mode", "at"), "an action")
        when(act, "at", "an action's")
    for f in s.get("findings") or []:
        need(f, ("check", "status", "summary"), "a finding")


def one_incident(records: list[Evidence]) -> list[Evidence]:
    """The records in start order; refuse records of different incidents."""
    if not records:
        raise PostmortemError("no record given")
    ids = sorted({r.summary.get("incident_id", "") for r in records})
    if len(ids) > 1:
        raise PostmortemError(f"records of different incidents: {', '.join(ids)} (one incident_id per post-mortem)")
    return sorted(records, key=lambda r: parse_time(r.summary["started_at"]))


def _duration(start: dt.datetime, end: dt.datetime | None) -> str:
    if end is None:
        return "ongoing (no confirming run yet)"
    minutes = (end - start).total_seconds() / 60
    return f"{minutes / 60:.1f} hours ({minutes:.0f} min)" if minutes >= 60 else f"{minutes:.0f} min"


def render(records: list[Evidence], charts: list[str] = (), impact: str | None = None,
           plans: list[dict[str, Any]] = (), done: list[dict[str, Any]] = (),
           lessons: list[dict[str, Any]] = ()) -> str:
    """The post-mortem Markdown; ``charts`` are the file names of the charts written beside it.

    ``impact`` wins over an ``impact`` parameter of the records (runbooks may define one). ``done``: the
    post-incident checklist's items as the archive keeps them (:func:`smartops_nb.postincident.checklist.state`),
    ticked with their proof; ``lessons``: the incident's lessons (``smartops learn``).
    """
    records = one_incident(records)
    first = records[0].summary
    rb = catalog.RUNBOOKS.get(first["runbook"])
    detected = _t(first["detected_at"])
    end = resolved_at(records)
    severity = first.get("severity", "")
    impact = impact or next((r.summary.get("parameters", {}).get("impact") for r in records
                   if r.summary.get("parameters", {}).get("impact")), None)
    confirmed = [r for r in records if (r.summary.get("diagnosis") or {}).get("confirmed")]
    executed = [a for r in records for a in r.summary.get("actions", []) if a["mode"] == "executed"]
    out = ["# Incident Post-Mortem", "",
           f"**Incident:** {first.get('incident_id', '')} — {first.get('title', '')} ({first.get('environment', '')})",
           f"**Date:** {detected.strftime('%Y-%m-%d')}",
           f"**Severity:** {severity}",
           f"**Duration:** {_duration(detected, end)}",
           f"**Impact:** {impact or TO_FILL}", "",
           "## Timeline"]
    out += [f"- {t} - {e}" for t, e in timeline(records, plans)]
    out += ["", "## Root Cause"]
    if confirmed:
        diag = confirmed[0].summary["diagnosis"]
        out.append(f"Causes: **{', '.join(diag.get('causes', []))}**. {diag.get('summary', '')}")
        out += ["", "Key evidence:"]
        crit = [f for f in confirmed[0].summary.get("findings", []) if f["status"] == "critical"]
        out += [f"- `{f['check']}`: {f['summary']}" for f in crit] or ["- (no critical finding recorded)"]
    else:
        out.append(f"No run confirmed a cause. {TO_FILL}")
    out += ["", "## Resolution"]
    out += [f"- `{a['action']}` on `{a['target']}` at {a['at']} by {a.get('operator', '')}"
            f"{_approval(a)}: {a.get('description', '')}"
            for a in executed] or [f"No mitigation was executed by SmartOps. {TO_FILL}"]
    if end is not None:
        out.append(f"- Confirmed resolved at {end.strftime('%Y-%m-%d %H:%M:%S')} by a later run that finds nothing.")
    due = (detected + dt.timedelta(days=7)).strftime("%Y-%m-%d")
    out += ["", "## Action Items"]
    fixes = rb.permanent_fixes if rb else ()
    out += [f"{i}. [ ] {fix} - Owner: {TO_FILL} - Due: {due}" for i, fix in enumerate(fixes, 1)] or [
        f"1. [ ] {TO_FILL} - Owner - Due date"]
    out += ["", "## Lessons Learned"] + [f"- {x['text']} ({x['by_whom']}, {x['at']}, lesson {x['id']})" for x in lessons]
    out += [f"- What went well: {TO_FILL}", f"- What didn't go well: {TO_FILL}",
            f"- What we'll do differently next time: {TO_FILL}"]
    out += ["", "## Post-Incident Checklist"] + checklist(records, severity, end, done)
    if charts:
        out += ["", "## Charts"] + [f"![chart {i}]({name})" for i, name in enumerate(charts, 1)]
    out += ["", "## Evidence", "", "| record | runbook | mode | diagnosis | SHA-256 |", "|---|---|---|---|---|"]
    for r in records:
        s = r.summary
        diag = s.get("diagnosis") or {}
        found = f"confirmed: {', '.join(diag.get('causes', []))}" if diag.get("confirmed") else "nothing confirmed"
        out.append(f"| `{r.path.name}` | {s['runbook']} | {s.get('mode', '')} | {found} | `{r.sha256}` |")
    return "\n".join(out) + "\n"


def checklist(records: list[Evidence], severity: str, end: dt.datetime | None,
              done: list[dict[str, Any]] = ()) -> list[str]:
    """The seed's post-incident checklist; ticked only where the records or the checklist's kept state
    (``done``: what SmartOps carried out, with when, by whom and its link) prove it."""
    box = lambda ok, text: f"- [{'x' if ok else ' '}] {text}"  # noqa: E731
    state = {r["item"]: r for r in done}
    has_timeline = all(r.summary.get("timeline") for r in records)
    meeting = "Schedule post-mortem meeting (within 48 hours for P1/P2)"
    if severity in ("P1", "P2") and end is not None:
        meeting += f" — due by {(end + dt.timedelta(hours=48)).strftime('%Y-%m-%d %H:%M')} UTC"
    seed = [("status-page", "Update status page", False),
            ("stakeholders", "Notify stakeholders of resolution", False),
            ("timeline", "Document timeline in incident tracker (timeline above, from the records)", has_timeline),
            ("meeting", meeting, False),
            ("tickets", "Create tickets for permanent fixes (see Action Items)", False),
            ("learnings", "Update runbook with learnings", False)]
    out = [box(ok or state.get(item, {}).get("status") in ("done", "not needed"), text + _proof(state.get(item)))
           for item, text, ok in seed]
    return out + [box(True, f"Incident record archived ({len(records)} record{'s' if len(records) != 1 else ''}, "
                            "SHA-256 under Evidence)")]


def _proof(row: dict[str, Any] | None) -> str:
    """What shows an item was carried out (or why it failed), from the checklist's kept state."""
    if not row or row["status"] == "open":
        return ""
    if row["status"] == "failed":
        return f" — FAILED: {row['error']}"
    if row["status"] == "not needed":
        return f" — not needed ({row['detail'].get('why', '')})"
    d = row.get("detail") or {}
    extra = [t["link"] for t in d.get("tickets", [])] or d.get("attendees", [])
    what = f"{row['link']}" + (f" ({', '.join(extra)})" if extra and row["link"] not in extra else "") \
        if row.get("link") else ", ".join(extra)
    if row["item"] == "meeting":
        what = f"invitation {row['link']} for {d.get('start')} to {', '.join(d.get('attendees', []))}"
    return f" — {row['status']} {row['at']} by {row['by']}" + (f": {what}" if what else "")


def write(records: list[Evidence | str | Path], out: str | Path, impact: str | None = None,
          plans: list[dict[str, Any]] = (), done: list[dict[str, Any]] = (),
          lessons: list[dict[str, Any]] = ()) -> Path:
    """Write the post-mortem to ``out`` and the records' charts beside it as PNG files.

    ``records``: loaded :class:`Evidence` (as the command has it already) or record paths.
    """
    records = one_incident([r if isinstance(r, Evidence) else load(r) for r in records])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    names = []
    for r in records:
        for i, png in enumerate(r.charts, 1):
            name = f"{out.stem}-{r.path.stem}-chart{i}.png"
            (out.parent / name).write_bytes(png)
            names.append(name)
    out.write_text(render(records, names, impact, plans, done, lessons))
    return out
