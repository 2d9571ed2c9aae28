"""The seed's post-incident checklist, carried out from the records and kept per incident.

After every stored run (:func:`after_run`, called by the investigate flow, so ``smartops run``,
``serve`` and the queue's workers alike), the incident's stage decides what is due: the status page
follows investigating → identified → resolved and the tracker issue follows the timeline; once resolved,
the tickets, the meeting invitation (P1/P2) and the stakeholders' summary go out. Each item's state
(done / when / by whom / link, or failed with its masked error) is kept in the archive's index
(:class:`smartops_nb.records.checklist_store.Store`); :func:`redo` retries one item. Nothing here ever raises into a run or ``serve``.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Mapping

from smartops_nb import catalog, redact
from smartops_nb.alerts import notify
from smartops_nb.params import ParameterError, iso, utcnow

from . import facts, mail, statuspage, trackers
from .config import ITEM_IDS, TITLES, load
from .facts import RESOLVED, Incident
from .http import CallFailed
from .once import once
from smartops_nb.records.archive import Archive
from smartops_nb.support.reasons import one_line
from smartops_nb.records.checklist_store import Claimed, Store

log = logging.getLogger("smartops.postincident")

DONE, FAILED, OPEN, WORKING, NOT_NEEDED = "done", "failed", "open", "in progress", "not needed"
AUTOMATION = "smartops"
LESSON_MAX = 2000


# -- the items ------------------------------------------------------------------------------------
def _status_page(cfg, store: Store, inc: Incident, ctx) -> tuple[str, str, dict]:
    if not ({"statuspage", "webhook"} & set(cfg)):
        return OPEN, "", {"why": "no statuspage: or webhook: configured"}
    links = [fn(cfg, store, inc, inc.stage) for kind, fn in (("statuspage", statuspage.statuspage),
                                                              ("webhook", statuspage.webhook)) if kind in cfg]
    return (DONE if inc.stage == RESOLVED else WORKING), links[0], {"stage": inc.stage, "links": links}


def _timeline(cfg, store: Store, inc: Incident, ctx) -> tuple[str, str, dict]:
    found = trackers.trackers(cfg)
    if not found:
        return OPEN, "", {"why": "no jira: or github: configured"}
    issues = [trackers.incident_issue(t, store, inc) for t in found]
    return (DONE if inc.stage == RESOLVED else WORKING), issues[0][1], {
        "issues": [{"ref": r, "link": l} for r, l in issues], "events": len(inc.timeline)}


def _tickets(cfg, store: Store, inc: Incident, ctx) -> tuple[str, str, dict]:
    found = trackers.trackers(cfg)
    if not found:
        return OPEN, "", {"why": "no jira: or github: configured"}
    if inc.stage != RESOLVED:
        return OPEN, "", {"why": "filed once the incident is resolved"}
    made = []
    for t in found:
        parent, _ = trackers.incident_issue(t, store, inc, item="tickets")
        made += [{"ref": r, "link": l} for r, l in trackers.tickets(t, store, inc, parent)]
    return DONE, (made[0]["link"] if made else ""), {"tickets": made}


def _meeting(cfg, store: Store, inc: Incident, ctx) -> tuple[str, str, dict]:
    meeting = cfg.get("meeting")
    wanted = meeting["severities"] if meeting else ["P1", "P2"]
    if inc.severity not in wanted:
        return NOT_NEEDED, "", {"why": f"{inc.severity}: the seed asks for a meeting for P1/P2"}
    if meeting is None:
        return OPEN, "", {"why": "no meeting: configured"}
    if inc.stage != RESOLVED:
        return OPEN, "", {"why": "scheduled once the incident is resolved"}
    start = mail.slot(inc.resolved, utcnow(), meeting)
    to = mail.attendees(inc, meeting)
    if not to:
        raise ParameterError("no attendee: name responders in meeting people: or list attendees:")

    def invite() -> tuple[str, str]:
        mail.send(cfg, mail.invitation_message(inc, cfg, start, to))
        return iso(start), mail.uid(inc)

    when, uid, _ = once(store, f"{inc.incident_id}:meeting", inc.incident_id, "meeting", invite)
    return DONE, uid, {"start": when, "attendees": to, "uid": uid, "draft": mail.draft_reference(inc)}


def _stakeholders(cfg, store: Store, inc: Incident, ctx) -> tuple[str, str, dict]:
    if inc.stage != RESOLVED:
        return OPEN, "", {"why": "notified once the incident is resolved"}
    told = [f"{o['target']} ({o.get('where', '')})" for o in ctx.get("notifications") or []
            if o.get("ok") and o.get("event") == "resolve"]
    detail: dict[str, Any] = {"notified": told}
    if "stakeholders" in cfg:
        def send() -> tuple[str, str]:
            mail.send(cfg, mail.summary_message(inc, cfg))
            return ", ".join(cfg["stakeholders"]["to"]), ""

        detail["emailed"], _, _ = once(store, f"{inc.incident_id}:stakeholders", inc.incident_id, "stakeholders", send)
    previous = ctx.get("previous", {}).get("detail", {})
    detail["notified"] = told or previous.get("notified", [])
    if not detail.get("emailed") and not detail["notified"]:
        return OPEN, "", {"why": "no resolution was sent (configure stakeholders: or notify:)"}
    return DONE, f"mailto:{detail['emailed']}" if detail.get("emailed") else "", detail


def _learnings(cfg, store: Store, inc: Incident, ctx) -> tuple[str, str, dict]:
    lessons = store.lessons(incident_id=inc.incident_id)
    if not lessons:
        return OPEN, "", {"why": f'smartops learn {inc.incident_id} "TEXT" records one'}
    return DONE, lessons[0]["id"], {"lessons": [x["id"] for x in lessons], "by": lessons[0]["by_whom"]}


ACTIONS: dict[str, Callable[..., tuple[str, str, dict]]] = {
    "status-page": _status_page, "stakeholders": _stakeholders, "timeline": _timeline, "meeting": _meeting,
    "tickets": _tickets, "learnings": _learnings}


def _do(cfg, store: Store, inc: Incident, item: str, by: str, ctx: dict[str, Any]) -> dict[str, Any]:
    """Carry out one item and keep its state; a failure is kept as failed with its masked reason."""
    previous = store.items(inc.incident_id).get(item)
    if previous and previous["status"] in (DONE, NOT_NEEDED) and not ctx.get("redo"):
        return previous
    try:
        status, link, detail = ACTIONS[item](cfg, store, inc, {**ctx, "previous": previous or {}})
        error = ""
    except Claimed as e:
        status, link, detail, error = WORKING, "", {}, str(e)
    except Exception as e:  # a service down, refused, a bad credential: the item fails, nothing else does
        status, link, detail = FAILED, "", {}
        error = redact.scrub(str(e) if isinstance(e, CallFailed) else one_line(e))
        log.error("post-incident %s for %s failed: %s", item, inc.incident_id, error)
    if item == "learnings" and status == DONE:
        by = detail.get("by") or by
    store.set_item(inc.incident_id, item, status, by=by, link=link, error=error, detail=detail)
    return store.items(inc.incident_id)[item]


def after_run(config: Mapping[str, Any] | None, summary: Mapping[str, Any], record: Path | str, archive: Archive,
              notifications: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Carry out what the incident's stage makes due; the items' states. Never raises."""
    try:
        cfg = load(config)
        told = [o for o in notifications or [] if o.get("event") == "resolve"]
        if not cfg and not told:
            return []
        inc = facts.read(archive, str(summary.get("incident_id", "")), notify.public_url(config))
        if inc.stage is None:
            return []
        ctx = {"notifications": notifications or []}
        with Store(archive).held() as store:
            return [_do(cfg, store, inc, item, AUTOMATION, ctx) for item in ITEM_IDS]
    except Exception as e:  # the run's record and exit code come first
        log.error("post-incident checklist skipped for %s: %s", summary.get("incident_id"),
                  redact.scrub(one_line(e)))
        return []


def redo(config: Mapping[str, Any] | None, archive: Archive, incident_id: str, item: str, by: str) -> dict[str, Any]:
    """Carry out one item again (a failed one, or one whose service was configured later)."""
    if item not in ITEM_IDS:
        raise ParameterError(f"unknown checklist item {item!r} (one of {', '.join(ITEM_IDS)})")
    cfg = load(config)
    inc = facts.read(archive, incident_id, notify.public_url(config))
    with Store(archive).held() as store:
        return _do(cfg, store, inc, item, by, {"redo": True})


def state(archive: Archive, incident_id: str) -> list[dict[str, Any]]:
    """The six items in the seed's order: status, when, by whom, link, error, detail."""
    with Store(archive).held(write=False) as store:
        kept = store.items(incident_id)
        lessons = store.lessons(incident_id=incident_id)
    rows = []
    for item in ITEM_IDS:
        row = kept.get(item) or {"status": OPEN, "at": None, "by_whom": "", "link": "", "error": "", "detail": {}}
        if item == "learnings" and lessons and row["status"] != DONE:  # learned after the last run
            row = {**row, "status": DONE, "at": lessons[0]["at"], "by_whom": lessons[0]["by_whom"],
                   "link": lessons[0]["id"]}
        rows.append({"item": item, "title": TITLES[item], "status": row["status"], "at": row["at"],
                     "by": row["by_whom"], "link": row["link"], "error": row["error"], "detail": row["detail"]})
    return rows


def learn(archive: Archive, incident_id: str, text: str, by: str, runbook: str | None = None) -> dict[str, Any]:
    """Keep a lesson of an incident for its runbook (or ``runbook``); ParameterError for bad input."""
    text = " ".join(str(text).split())
    if not text:
        raise ParameterError("a lesson needs some text")
    if len(text) > LESSON_MAX:
        raise ParameterError(f"a lesson is at most {LESSON_MAX} characters (got {len(text)})")
    if runbook is not None and runbook not in catalog.RUNBOOKS:
        raise ParameterError(f"unknown runbook {runbook!r} (known: {', '.join(sorted(catalog.RUNBOOKS))})")
    try:
        inc = facts.read(archive, incident_id)
    except LookupError as e:
        raise ParameterError(str(e)) from None
    store = Store(archive)
    lesson = store.add_lesson(incident_id, runbook or inc.runbook, redact.scrub(text), by or "unknown")
    store.set_item(incident_id, "learnings", DONE, by=lesson["by_whom"], link=lesson["id"],
                   detail={"lessons": [lesson["id"]], "by": lesson["by_whom"]})
    return lesson


def lessons_for(archive: Archive, runbook: str, limit: int = 10) -> list[dict[str, Any]]:
    """The runbook's lessons, newest first (empty when the index cannot be read: a run never waits on it)."""
    try:
        return Store(archive).lessons(runbook=runbook, limit=limit)
    except Exception as e:
        log.warning("lessons of %s not read: %s", runbook, redact.scrub(str(e)))
        return []


def text(rows) -> str:
    """One line per item: ``[x] Update status page: done 2026-... by smartops · LINK``."""
    marks = {"done": "x", "not needed": "-", "failed": "!"}
    out = []
    for r in rows:
        when = f" {r['at']}" if r.get("at") and r["status"] != "open" else ""
        by = f" by {r['by']}" if r.get("by") and r["status"] != "open" else ""
        tail = f" · {r['link']}" if r.get("link") else ""
        why = f" ({r['error']})" if r.get("error") else (
            f" ({r['detail']['why']})" if r["status"] in ("open", "not needed") and r.get("detail", {}).get("why") else "")
        out.append(f"  [{marks.get(r['status'], ' ')}] {r['title']} [{r['item']}]: {r['status']}{when}{by}{tail}{why}")
    return "\n".join(out)


def proof(archive: Archive, incident_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What the post-mortem draft ticks with: the items' state and the incident's lessons (empty when
    the archive's index cannot say: the draft then ticks only what the records prove)."""
    try:
        return state(archive, incident_id), Store(archive).lessons(incident_id=incident_id)
    except Exception as e:
        log.warning("post-incident checklist of %s not read: %s", incident_id, redact.scrub(str(e)))
        return [], []
