"""Communicate: tell people when a run confirms an incident, and when a later run finds it resolved.

Configured under ``notify:`` in a parameters file (see ``parameters/notify.example.yaml``)::

    notify:
      timeout_s: 5
      slack:                       # a Slack-compatible incoming webhook (one mapping or a list)
        webhook_url: env:SLACK_WEBHOOK_URL
      pagerduty:                   # PagerDuty Events API v2, for the listed severities only
        routing_key: env:PAGERDUTY_ROUTING_KEY
        severities: [P1]

Secrets are *references* (``env:NAME``), resolved at use. A webhook URL and a routing key are
secrets whatever their form: registered with :mod:`smartops_nb.redact` before use, and every error
text is scrubbed before it is logged or kept. Every call has a timeout; a target that fails is
logged and its outcome kept, never raised: a notification must not cost the run.

When (:func:`event_for`): a run that confirms a diagnosis sends ``trigger``; so does an incident's
first run (the firing run) that ends *inconclusive* or *failed*: nobody is left in silence when the
runbook could not look, and the message says which steps could not complete (or why the run
failed) and links the record. A completed run that confirms nothing, for an ``incident_id`` whose
previous record was confirmed, sends ``resolve``. An approved plan's mitigation run sends nothing
itself: :func:`after_plan` posts its outcome once (Slack; PagerDuty as a Change Event, on the
service's and its open incident's timeline, never a new trigger). "Previous" is found in the archive folder's index (by
``incident_id``); only without an index are the records read.

Outcomes: the message names the record, and a record is written once, so notifications go out
*after* the record is written; their outcomes are appended to ``notifications.jsonl`` in the
archive folder (one JSON line per target and event, with the record's file name), returned to
the caller (``Result.notifications``) and logged.
"""
from __future__ import annotations

import json
import logging
import sqlite3
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import quote, urlsplit

from smartops_nb import redact
from smartops_nb.contract import PUBLIC_URL_ENV
from smartops_nb.params import ParameterError, iso, resolve_env, utcnow
from smartops_nb.support.reasons import one_line
from smartops_nb.records.render import plan_command

if TYPE_CHECKING:
    from smartops_nb.records.archive import Archive

log = logging.getLogger("smartops.notify")

LOG_NAME = "notifications.jsonl"
PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
PD_SEVERITY = {"P1": "critical", "P2": "error", "P3": "warning", "P4": "info"}
DEFAULT_TIMEOUT_S = 5.0
_log_lock = threading.Lock()


# -- configuration ---------------------------------------------------------------------------
def targets(config: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The configured targets as ``{"kind", ...}`` dicts; ParameterError if the section is malformed."""
    section = (config or {}).get("notify")
    section = {} if section is None else section
    if not isinstance(section, Mapping):
        raise ParameterError("'notify' must be a mapping (slack:, pagerduty:, timeout_s:)")
    unknown = set(section) - {"slack", "pagerduty", "timeout_s", "public_url"}
    if unknown:
        raise ParameterError(f"unknown notify setting {sorted(unknown)[0]!r} (slack, pagerduty, timeout_s, public_url)")
    if not isinstance(section.get("public_url", ""), str):
        raise ParameterError("notify public_url must be the URL of `smartops serve`'s pages")
    timeout = section.get("timeout_s", DEFAULT_TIMEOUT_S)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 < timeout <= 60:
        raise ParameterError("notify timeout_s must be a number of seconds in (0, 60]")
    out = []
    for kind, required in (("slack", "webhook_url"), ("pagerduty", "routing_key")):
        entries = section.get(kind)
        if entries is None:
            continue
        for entry in [entries] if isinstance(entries, Mapping) else entries:
            if not isinstance(entry, Mapping) or not isinstance(entry.get(required), str) or not entry[required]:
                raise ParameterError(f"notify {kind} needs {required}: (a value or env:NAME)")
            t = {"kind": kind, "timeout_s": float(entry.get("timeout_s", timeout)), **entry}
            if kind == "pagerduty":
                t.setdefault("url", PAGERDUTY_URL)
                t["severities"] = list(entry.get("severities", ["P1"]))
            out.append(t)
    return out


def _secret(target: Mapping[str, Any], key: str) -> str:
    """A target's ``env:NAME`` reference resolved (ParameterError if unset or empty), registered as a
    secret so that no log line or outcome shows it."""
    value = resolve_env(target[key], name=f"notify {target['kind']} {key}")
    if not value:
        raise ParameterError(f"notify {target['kind']} {key} is empty ({target[key]})")
    if value != PAGERDUTY_URL:  # the public endpoint is no secret (a record may well name it)
        redact.register_secret(value)
    return value


# -- when --------------------------------------------------------------------------------------
def previous_record(archive: Archive, incident_id: str, exclude: Path | None = None) -> dict[str, Any] | None:
    """The latest earlier record summary of ``incident_id`` in the archive (by started_at), or None.

    Asks the archive index (one indexed query); reads the records themselves only when there is no
    index. From the index the summary has what :func:`event_for` needs: ``status``, ``started_at``
    and ``diagnosis`` (``confirmed``, ``causes``, ``summary``).
    """
    from smartops_nb.records.entries import IndexMissing, IndexUnavailable

    local = not archive.shared  # a folder with its own index: its records can be read when the index cannot
    if not incident_id or (local and not archive.folder.is_dir()):
        return None
    skip = Path(exclude).name if exclude is not None else None
    try:
        # two: the record just written (``exclude``) is normally the latest
        rows = archive.list(limit=2, incident_id=incident_id)
    except IndexMissing:
        return _scan_previous(archive.folder, incident_id, skip) if local else None
    except (sqlite3.Error, IndexUnavailable) as e:
        log.warning("archive index unreadable (%s): reading the records", e)
        return _scan_previous(archive.folder, incident_id, skip) if local else None
    row = next((r for r in rows if r["name"] != skip), None)
    if row is None:
        return None
    return {"incident_id": row["incident_id"], "runbook": row["runbook"], "status": row["status"],
            "started_at": row["started_at"], "severity": row["severity"], "environment": row["environment"],
            "diagnosis": {"confirmed": row["confirmed"], "causes": row["causes"], "summary": row["diagnosis"]},
            "record": row["name"]}


def _scan_previous(folder: Path, incident_id: str, skip: str | None) -> dict[str, Any] | None:
    latest: dict[str, Any] | None = None
    for path in folder.glob("*.ipynb"):
        if path.name == skip:
            continue
        try:
            summary = json.loads(path.read_text()).get("metadata", {}).get("smartops") or {}
        except (OSError, ValueError):
            continue
        if summary.get("incident_id") == incident_id and (
                latest is None or str(summary.get("started_at", "")) > str(latest.get("started_at", ""))):
            latest = summary
    return latest


def event_for(summary: Mapping[str, Any], previous: Mapping[str, Any] | None) -> str | None:
    """``trigger``, ``resolve`` or None (nothing worth telling anyone)."""
    if (summary.get("parameters") or {}).get("plan_id"):
        return None  # a plan's mitigation run: after_plan tells its outcome, once
    diag = summary.get("diagnosis", {})
    if diag.get("confirmed"):
        return "trigger"
    if previous is None and (diag.get("inconclusive") or summary.get("status") != "completed"):
        return "trigger"  # the firing run could not diagnose: exactly when a person must look
    if diag.get("inconclusive"):  # could not look: not evidence of recovery
        return None
    if summary.get("status") == "completed" and previous and previous.get("diagnosis", {}).get("confirmed"):
        return "resolve"
    return None


# -- what --------------------------------------------------------------------------------------
def _actions_text(summary: Mapping[str, Any]) -> str:
    acts = summary.get("actions") or []
    return "; ".join(f"{a.get('action')} on {a.get('target')}: {a.get('mode')}" for a in acts) or "none"


def state_of(summary: Mapping[str, Any], event: str) -> str:
    """What a message says the run found: RESOLVED, CONFIRMED, INCONCLUSIVE or FAILED."""
    diag = summary.get("diagnosis") or {}
    if event == "resolve":
        return "RESOLVED"
    if diag.get("confirmed"):
        return "CONFIRMED"
    return "INCONCLUSIVE" if summary.get("status") == "completed" else "FAILED"


def unchecked_text(summary: Mapping[str, Any]) -> str:
    """What the run could not check ('' when it checked everything it meant to)."""
    diag = summary.get("diagnosis") or {}
    if summary.get("status") != "completed":
        return f"the run {summary.get('status')}: {summary.get('error') or 'see the record'}"
    steps = diag.get("incomplete_steps") or []
    return f"could not check: {', '.join(steps)}" if diag.get("inconclusive") and steps else ""


def headline(summary: Mapping[str, Any], event: str) -> str:
    state = state_of(summary, event)
    return (f"[{summary.get('severity')}] {state}: {summary.get('title') or summary.get('runbook')} "
            f"({summary.get('environment')}, incident {summary.get('incident_id')})")


def _evidence_text(evidence: Mapping[str, str] | None) -> str:
    if not evidence:
        return ""
    return f" · sha256 {evidence['sha256']} · chain entry {evidence['entry_hash']}"


def public_url(config: Mapping[str, Any] | None) -> str:
    """Where people reach `smartops serve`'s pages: ``notify: public_url:``, else $SMARTOPS_PUBLIC_URL."""
    import os

    section = (config or {}).get("notify") or {}
    return str(section.get("public_url") or os.environ.get(PUBLIC_URL_ENV, "")).rstrip("/")


def links(base: str, summary: Mapping[str, Any], record: Path | None) -> dict[str, str]:
    """The incident's and the record's pages, when the pages have a public URL."""
    if not base:
        return {}
    out = {"incident": f"{base}/incidents/{quote(str(summary.get('incident_id', '')), safe='')}"}
    if record is not None:
        out["record"] = f"{base}/records/{quote(Path(record).name, safe='')}"
    return out


def _pending_plans(summary: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [p for p in summary.get("plans") or [] if p.get("status", "pending") == "pending"]


def slack_payload(summary: Mapping[str, Any], record: Path, event: str,
                  evidence: Mapping[str, str] | None = None, pages: Mapping[str, str] | None = None) -> dict[str, Any]:
    diag = summary.get("diagnosis", {})
    causes = ", ".join(diag.get("causes") or []) or "none"
    where = pages.get("record") if pages else None
    lines = [headline(summary, event), f"Runbook: {summary.get('runbook')} · causes: {causes}",
             f"Diagnosis: {diag.get('summary')}", f"Actions: {_actions_text(summary)}",
             f"Record: {where or record}{_evidence_text(evidence)}"]
    unchecked = unchecked_text(summary) if event == "trigger" else ""
    if unchecked:
        lines.insert(3, f"A person must look: {unchecked}")
    if pages:
        lines.insert(4, f"Incident: {pages['incident']}")
    plan_lines = [f"Plan {p['id']}: {p['action']} on {p['target']} (until {p['expires_at']}) · approve: "
                  f"`{plan_command(p)}`" for p in _pending_plans(summary)]
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": headline(summary, event)[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines[1:5 if unchecked else 4])}},
    ]
    if plan_lines:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(plan_lines)}})
    if pages:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": (
            f"<{pages['incident']}|Incident page> · <{pages['record']}|Record with its charts>")}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn",
                                                    "text": f"Record: `{record}`{_evidence_text(evidence)}"}]})
    return {"text": "\n".join(lines + plan_lines), "blocks": blocks}


def plan_message(plan: Mapping[str, Any], record: Path | None) -> str:
    """One line: what became of a plan (executed, refused, failed, denied), by whom, and its record."""
    who = f" by {plan.get('decided_by')}" if plan.get("decided_by") else ""
    tail = f" · record {Path(record).name}" if record else ""
    return (f"[{plan.get('severity')}] plan {plan['id']} {str(plan.get('state') or plan.get('status')).upper()}{who}: "
            f"{plan['action']} on {plan['target']} (incident {plan['incident_id']}): {plan.get('reason') or ''}{tail}")


def pagerduty_payload(summary: Mapping[str, Any], record: Path, event: str, routing_key: str,
                      evidence: Mapping[str, str] | None = None, pages: Mapping[str, str] | None = None
                      ) -> dict[str, Any]:
    body: dict[str, Any] = {"routing_key": routing_key, "event_action": event,
                            "dedup_key": f"smartops:{summary.get('incident_id')}"}
    if event == "trigger":
        diag = summary.get("diagnosis", {})
        body["payload"] = {
            "summary": f"{headline(summary, event)}: {diag.get('summary')}"[:1024],
            "source": f"smartops/{summary.get('environment')}",
            "severity": PD_SEVERITY.get(str(summary.get("severity")), "error"),
            "custom_details": {"runbook": summary.get("runbook"), "causes": diag.get("causes", []),
                               "actions": _actions_text(summary), "record": str(record),
                               "plans": [{"id": p["id"], "action": p["action"], "target": p["target"],
                                          "expires_at": p["expires_at"], "approve": plan_command(p)}
                                         for p in _pending_plans(summary)],
                               "detected_at": summary.get("detected_at"),
                               "unchecked": unchecked_text(summary) or None,
                               "record_sha256": (evidence or {}).get("sha256"),
                               "incident_page": (pages or {}).get("incident"),
                               "record_page": (pages or {}).get("record"),
                               "chain_entry": (evidence or {}).get("entry_hash")},
        }
    return body


# -- how ---------------------------------------------------------------------------------------
def _post(url: str, body: Mapping[str, Any], timeout: float) -> int:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.status


def _where(url: str) -> str:
    """A target's URL without its secret parts (a Slack webhook's path is the secret)."""
    try:
        u = urlsplit(url)
        port = u.port
    except ValueError:
        return "(not a URL)"
    if not u.scheme or not u.hostname:
        return "(not a URL)"
    return f"{u.scheme}://{u.hostname}{f':{port}' if port else ''}"


def send(target: Mapping[str, Any], summary: Mapping[str, Any], record: Path, event: str,
         evidence: Mapping[str, str] | None = None, pages: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Send one notification; the outcome as a dict (``ok``, ``status`` or ``error``). Never raises.

    ``evidence``: the record's ``sha256`` and archive ``entry_hash``; sent with the message, they
    anchor the archive's hash chain outside it (``smartops archive verify --anchor``)."""
    outcome: dict[str, Any] = {"at": iso(utcnow()), "target": target["kind"], "event": event,
                               "incident_id": summary.get("incident_id"), "record": Path(record).name,
                               "chain_entry": (evidence or {}).get("entry_hash")}

    def build() -> tuple[str, dict[str, Any]]:
        if target["kind"] == "slack":
            return _secret(target, "webhook_url"), slack_payload(summary, record, event, evidence, pages)
        return _secret(target, "url"), pagerduty_payload(summary, record, event, _secret(target, "routing_key"),
                                                         evidence, pages)

    _deliver(target, outcome, build)
    if outcome["ok"]:
        log.info("notified %s (%s) of %s: incident %s", target["kind"], outcome.get("where"), event,
                 summary.get("incident_id"))
    else:
        log.error("notification to %s (%s) failed: %s", target["kind"], outcome.get("where", "?"), outcome["error"])
    return outcome


def _deliver(target: Mapping[str, Any], outcome: dict[str, Any], build) -> dict[str, Any]:
    """POST what ``build()`` returns (url, body) to a target and note how it went in ``outcome``.
    Never raises: timeouts, refused connections, unset env references, a URL without scheme..."""
    try:
        url, body = build()
        outcome["where"] = _where(url)
        outcome["status"] = _post(url, body, target["timeout_s"])
        outcome["ok"] = True
    except urllib.error.HTTPError as e:
        outcome.update(ok=False, status=e.code, error=redact.scrub(f"HTTP {e.code} {e.reason}"))
    except Exception as e:
        outcome.update(ok=False, error=redact.scrub(f"{type(e).__name__}: {getattr(e, 'reason', None) or e}"))
    return outcome


def after_run(config: Mapping[str, Any] | None, summary: Mapping[str, Any], record: Path | str,
              archive: Archive) -> list[dict[str, Any]]:
    """Notify the configured targets about a finished run, if there is something to say. Never raises."""
    try:
        configured = targets(config)
        if not configured:
            return []
        event = event_for(summary, previous_record(archive, str(summary.get("incident_id", "")), exclude=record))
        if event is None:
            return []
        evidence = archive.entry(Path(record).name)
        pages = links(public_url(config), summary, record)
        outcomes = [send(t, summary, record, event, evidence, pages) for t in configured
                    if t["kind"] != "pagerduty" or summary.get("severity") in t["severities"]]
        _append_log(archive, outcomes)
        return outcomes
    except Exception as e:  # a notification problem must never cost the run its record or exit code
        error = redact.scrub(one_line(e))
        log.error("notifications skipped: %s", error)
        return [{"ok": False, "error": error, "record": Path(record).name}]


def after_plan(config: Mapping[str, Any] | None, plan: Mapping[str, Any], record: Path | None,
               archive: Archive) -> list[dict[str, Any]]:
    """Tell the targets what became of a plan. Slack hears every outcome; PagerDuty hears those of
    approved plans as a change event (no new trigger). Never raises."""
    try:
        configured = targets(config)
        pages = links(public_url(config), plan, record)
        text = plan_message(plan, record) + (f" · {pages['incident']}" if pages else "")
        outcomes = []
        for t in configured:
            if t["kind"] == "pagerduty" and (plan.get("severity") not in t["severities"]
                                            or plan.get("status") == "denied"):
                continue
            outcomes.append(_send_plan(t, plan, text, record))
        _append_log(archive, outcomes)
        return outcomes
    except Exception as e:  # never costs the approval its outcome
        error = redact.scrub(one_line(e))
        log.error("plan notifications skipped: %s", error)
        return [{"ok": False, "error": error, "plan": plan.get("id")}]


def _send_plan(target: Mapping[str, Any], plan: Mapping[str, Any], text: str, record: Path | None) -> dict[str, Any]:
    outcome: dict[str, Any] = {"at": iso(utcnow()), "target": target["kind"], "event": f"plan-{plan.get('status')}",
                               "incident_id": plan.get("incident_id"), "plan": plan.get("id"),
                               "record": Path(record).name if record else None}

    def build() -> tuple[str, dict[str, Any]]:
        if target["kind"] == "slack":
            return _secret(target, "webhook_url"), {"text": text}
        return change_url(_secret(target, "url")), plan_change_event(plan, text, record,
                                                                     _secret(target, "routing_key"))

    _deliver(target, outcome, build)
    if not outcome["ok"]:
        log.error("plan notification to %s failed: %s", target["kind"], outcome["error"])
    return outcome


def change_url(events_url: str) -> str:
    """PagerDuty's Change Events endpoint beside the Events API v2 one (``…/v2/enqueue`` → ``…/v2/change/enqueue``)."""
    return events_url[: -len("/v2/enqueue")] + "/v2/change/enqueue" if events_url.endswith("/v2/enqueue") else events_url


def plan_change_event(plan: Mapping[str, Any], text: str, record: Path | None, routing_key: str) -> dict[str, Any]:
    """A plan's outcome for PagerDuty as a *change event*: shown on the service and its open incident's
    recent changes, never a new trigger (the incident was triggered by the run that confirmed it)."""
    return {"routing_key": routing_key,
            "payload": {"summary": text[:1024], "source": "smartops/approve",
                        "custom_details": {"plan": plan.get("id"), "status": plan.get("status"),
                                           "incident_id": plan.get("incident_id"),
                                           "dedup_key": f"smartops:{plan.get('incident_id')}",
                                           "reason": plan.get("reason"), "decided_by": plan.get("decided_by"),
                                           "record": str(record) if record else None}}}


def _append_log(archive: Archive, outcomes: list[dict[str, Any]]) -> None:
    if not outcomes:
        return
    folder = archive.log_dir
    folder.mkdir(parents=True, exist_ok=True)
    with _log_lock, open(folder / LOG_NAME, "a") as f:
        for o in outcomes:
            f.write(json.dumps(o, default=str) + "\n")


def outcomes_for(archive: Archive, record_name: str) -> list[dict[str, Any]]:
    """The logged notification outcomes of one record (by file name)."""
    try:
        lines = (archive.log_dir / LOG_NAME).read_text().splitlines()
    except OSError:
        return []
    return [o for o in (json.loads(x) for x in lines if x.strip()) if o.get("record") == record_name]
