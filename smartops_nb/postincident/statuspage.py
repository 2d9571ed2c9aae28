"""The status page: an Atlassian Statuspage incident with its components' status, moved on as the
incident moves (investigating → identified → resolved), and a generic JSON webhook for anything else.

Statuspage's REST API (developer.statuspage.io): ``POST /v1/pages/{page_id}/incidents`` with
``{"incident": {name, status, body, impact_override, component_ids, components: {id: status}}}``
creates one (201, the incident with ``id`` and ``shortlink``); ``PATCH .../incidents/{incident_id}``
with the same envelope updates it. The API key goes in ``Authorization: OAuth KEY``.
"""
from __future__ import annotations

from typing import Any

from .config import secret
from .facts import IDENTIFIED, INVESTIGATING, RESOLVED, STAGES, Incident, timeline_text
from .http import call
from .once import once
from smartops_nb.records.checklist_store import Store

COMPONENT = {INVESTIGATING: "major_outage", IDENTIFIED: "partial_outage", RESOLVED: "operational"}
IMPACT = {"P1": "critical", "P2": "major", "P3": "minor", "P4": "none"}
ITEM = "status-page"


def message(inc: Incident, stage: str) -> str:
    if stage == RESOLVED:
        return f"Resolved: {inc.title or inc.runbook} in {inc.environment} is working normally again."
    if stage == IDENTIFIED:
        return f"Identified: {', '.join(inc.causes) or 'the cause'}; a fix is being applied."
    return f"Investigating: {inc.title or inc.runbook} in {inc.environment}. {inc.diagnosis}".strip()


def _passed(store: Store, prefix: str, stage: str) -> bool:
    """This stage or a later one was already announced (an update arriving late never goes backwards)."""
    later = STAGES[STAGES.index(stage):]
    return any((store.key(f"{prefix}:{s}") or {}).get("done_at") for s in later)


def statuspage(cfg: dict[str, Any], store: Store, inc: Incident, stage: str) -> str:
    """Announce ``stage`` on Statuspage (once); the incident's shortlink."""
    sp = cfg["statuspage"]
    base, page = secret(sp, "url", "statuspage").rstrip("/"), secret(sp, "page_id", "statuspage")
    headers = {"Authorization": f"OAuth {secret(sp, 'api_key', 'statuspage')}"}
    ids = [str(c) for c in sp["component_ids"]]
    body = {"incident": {"name": inc.headline, "status": stage, "body": message(inc, stage),
                         "component_ids": ids, "components": {c: COMPONENT[stage] for c in ids}}}
    key = f"{inc.incident_id}:statuspage"

    def create() -> tuple[str, str]:
        first = {"incident": {**body["incident"], "impact_override": IMPACT.get(inc.severity, "major")}}
        data = call("POST", f"{base}/v1/pages/{page}/incidents", json=first, headers=headers,
                    timeout=cfg["timeout_s"], total=cfg["total_s"]).json()
        return str(data["id"]), str(data.get("shortlink") or "")

    ref, link, created = once(store, key, inc.incident_id, ITEM, create)

    def update() -> tuple[str, str]:
        if not created:
            call("PATCH", f"{base}/v1/pages/{page}/incidents/{ref}", json=body, headers=headers,
                 timeout=cfg["timeout_s"], total=cfg["total_s"])
        return ref, link

    if not _passed(store, key, stage):
        once(store, f"{key}:{stage}", inc.incident_id, ITEM, update)
    return link or f"statuspage incident {ref}"


def webhook(cfg: dict[str, Any], store: Store, inc: Incident, stage: str) -> str:
    """POST the incident's state to the webhook (once per stage); where it went (without secrets)."""
    hook = cfg["webhook"]
    url = secret(hook, "url", "webhook")
    key = f"{inc.incident_id}:webhook"
    payload = {"source": "smartops", "incident_id": inc.incident_id, "status": stage, "severity": inc.severity,
               "title": inc.title, "runbook": inc.runbook, "environment": inc.environment,
               "message": message(inc, stage), "causes": inc.causes, "timeline": timeline_text(inc),
               "links": inc.pages}

    def send() -> tuple[str, str]:
        call("POST", url, json=payload, headers={str(k): str(v) for k, v in hook["headers"].items()},
             timeout=cfg["timeout_s"], total=cfg["total_s"])
        return stage, ""

    if not _passed(store, key, stage):
        once(store, f"{key}:{stage}", inc.incident_id, ITEM, send)
    return "webhook"
