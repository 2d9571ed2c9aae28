"""The record summary for a person: the tables of a record's last cell, and its one-screen text.

Pure functions of the summary (``metadata["smartops"]``): the kernel shows them at the end of a run
(:mod:`smartops_nb.kernel.display`), the record writer appends them when a run did not reach its end.
"""
from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any
from smartops_nb.support.files import replace_atomically

#: Every script element: a record needs none (its charts are images, its tables HTML), and one that
#: came from a hostile log line must never run where the record is read.
_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script\s*>", re.I | re.S)
#: What the HTML of a record's outputs and markdown may keep (bleach, through nbconvert's SanitizeHTML):
#: the tags our tables, summaries and notes use. No img, a, iframe, form, style or event attribute:
#: charts are image outputs, rendered by the template itself, never HTML from an output.
SAFE_TAGS = ["p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "b", "strong", "i", "em", "code", "pre",
             "span", "div", "ul", "ol", "li", "table", "thead", "tbody", "tr", "th", "td", "details", "summary",
             "blockquote", "sub", "sup"]
SAFE_ATTRIBUTES = {"*": ["class"], "span": ["style"], "td": ["style"], "th": ["style"], "table": ["border"]}
SAFE_STYLES = ["color", "font-weight", "text-align"]


def record_html(path: Path) -> str:
    """The record as one standalone HTML page: charts embedded, every output's and note's HTML
    sanitized to :data:`SAFE_TAGS`, no script at all (nor the CDN loads of nbconvert's template:
    opening a record reaches nothing), scrubbed of secrets. ``archive export`` writes it; ``serve``
    shows it (under a policy that forbids scripts besides)."""
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors.sanitize import SanitizeHTML

    from smartops_nb import redact

    nb = nbformat.read(path, as_version=4)
    clean = SanitizeHTML(tags=SAFE_TAGS, attributes=SAFE_ATTRIBUTES, styles=SAFE_STYLES, strip=True)
    nb, _ = clean.preprocess(nb, {})
    body, _ = HTMLExporter(embed_images=True).from_notebook_node(nb)
    return redact.scrub(_SCRIPT.sub("", body))

_COLOURS = {"ok": "#1a7f37", "warn": "#9a6700", "critical": "#cf222e", "error": "#8250df"}
_ICONS = {"ok": "✔", "warn": "⚠", "critical": "✖", "error": "⁉"}


def export_html(path: Path, out: Path) -> Path:
    """A standalone HTML page of the record (:func:`record_html`), written atomically."""
    body = record_html(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    return replace_atomically(out, body)


def badge(status: str) -> str:
    colour = _COLOURS.get(status, "#57606a")
    return f'<span style="color:{colour};font-weight:bold">{_ICONS.get(status, "")} {html.escape(status)}</span>'


def _rows(headers: list[str], rows: list[list[Any]]) -> str:
    th = "".join(f"<th style='text-align:left'>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td style='text-align:left'>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def summary_html(s: dict[str, Any]) -> str:
    """The record summary as readable tables (the last cell of every record)."""
    e = html.escape
    diag = s.get("diagnosis") or {}
    verdict = "CONFIRMED" if diag.get("confirmed") else "not confirmed"
    head = [
        ["Runbook", e(s.get("runbook", ""))], ["Severity", e(s.get("severity", ""))],
        ["Environment", e(s.get("environment", ""))], ["Incident", e(s.get("incident_id", ""))],
        ["Detected", e(s.get("detected_at", ""))], ["Started", e(s.get("started_at", ""))],
        ["Finished", e(str(s.get("finished_at") or ""))], ["Status", e(s.get("status", ""))],
        ["Diagnosis", f"<b>{verdict}</b>: {e(', '.join(diag.get('causes', [])) or 'no cause confirmed')}"],
        ["Summary", e(diag.get("summary", ""))],
    ]
    head += _response_rows(s.get("response"))
    parts = ["<h3>Incident record summary</h3>", _rows(["", ""], head)]
    parts.append("<h4>Findings</h4>")
    parts.append(_rows(["check", "status", "summary"],
                       [[e(f["check"]), badge(f["status"]), e(f["summary"])] for f in s.get("findings", [])]))
    acts = s.get("actions", [])
    parts.append("<h4>Actions</h4>")
    parts.append(_rows(["action", "target", "mode", "at", "result"],
                       [[e(a["action"]), e(a["target"]), e(a["mode"]), e(a["at"]),
                         e(json.dumps(a.get("result"), default=str)[:300])] for a in acts])
                 if acts else "<p><i>No action recommended or run.</i></p>")
    pending = [p for p in s.get("plans") or [] if p.get("status", "pending") == "pending"]
    if pending:
        parts.append("<h4>Plans awaiting approval</h4>")
        parts.append(_rows(["plan", "action", "target", "expires", "approve with"],
                           [[e(p["id"]), e(p["action"]), e(p["target"]), e(p["expires_at"]),
                             f"<code>{e(plan_command(p))}</code>"] for p in pending]))
    parts.append("<h4>Timeline</h4>")
    parts.append(_rows(["at", "event"], [[e(t["at"]), e(t["event"])] for t in s.get("timeline", [])]))
    return "\n".join(parts)


def _response_rows(r: dict[str, Any] | None) -> list[list[str]]:
    """Response time against the target, and the escalations due or overdue, with whom to call."""
    if not r:
        return []
    from smartops_nb.response import verdict

    e = html.escape
    status = "ok" if r.get("met") else ("critical" if r.get("met") is False else "warn")
    rows = [["Response", f"{badge(status)} {e(verdict(r))}; due {e(r['due_at'])}"]]
    pending = [x for x in r.get("escalations", []) if x["status"] in ("due", "overdue")]
    for x in pending:
        colour = "critical" if x["status"] == "overdue" else "warn"
        rows.append([f"Escalation ({e(x['status'])})",
                     f"{badge(colour)} {e(x['role'])} at +{x['after_minutes']} min ({e(x['due_at'])}): "
                     f"{e(x.get('name', ''))}, {e(x.get('contact', ''))}"])
    if not pending:
        rows.append(["Escalation", "none due"])
    return rows


def plan_command(plan: dict[str, Any]) -> str:
    """The command that approves a plan (the same text in the record, the CLI and notifications)."""
    return f"smartops approve {plan['id']} --operator NAME"


def summary_text(s: dict[str, Any]) -> str:
    diag = s.get("diagnosis") or {}
    lines = [
        f"{s.get('runbook')} [{s.get('severity')}] {s.get('environment')} incident {s.get('incident_id')}",
        f"status: {s.get('status')}   diagnosis: {'CONFIRMED' if diag.get('confirmed') else 'not confirmed'}"
        f" {', '.join(diag.get('causes', []))}",
        f"summary: {diag.get('summary', '')}",
    ]
    r = s.get("response")
    if r:
        from smartops_nb.response import verdict

        lines.append(f"response: {verdict(r)}")
        lines += [f"  escalation {x['status']}: {x['role']} at {x['due_at']} ({x.get('contact', '')})"
                  for x in r.get("escalations", []) if x["status"] in ("due", "overdue")]
    lines += [f"  [{f['status']}] {f['check']}: {f['summary']}" for f in s.get("findings", [])]
    lines += [f"  action {a['action']} on {a['target']}: {a['mode']}" for a in s.get("actions", [])]
    lines += [f"  plan {p['id']}: {p['action']} on {p['target']}, until {p['expires_at']}: {plan_command(p)}"
              for p in s.get("plans") or [] if p.get("status", "pending") == "pending"]
    return "\n".join(lines)
