"""The incident tracker: one incident issue carrying the timeline, updated as the incident moves, and
one ticket per post-mortem action item (the runbook's permanent fixes), linked to it.

Jira Cloud REST v3 (developer.atlassian.com/cloud/jira/platform/rest/v3): ``POST /rest/api/3/issue``
with ``{"fields": {project: {key}, issuetype: {name}, summary, description: <ADF document>, labels}}``
answers 201 ``{id, key, self}``; ``PUT /rest/api/3/issue/{key}`` with ``{"fields": {...}}`` answers 204;
``POST /rest/api/3/issueLink`` with ``{type: {name}, inwardIssue: {key}, outwardIssue: {key}}`` answers
201. Basic auth with the account's e-mail and an API token.

GitHub REST (docs.github.com/rest/issues): ``POST /repos/{owner}/{repo}/issues`` ``{title, body, labels}``
answers 201 ``{number, html_url}``; ``PATCH /repos/{owner}/{repo}/issues/{number}`` updates it. A
ticket names its incident issue (``#N``), which GitHub shows as a link both ways.
"""
from __future__ import annotations

import hashlib
from typing import Any

from .config import secret
from .facts import Incident, timeline_text
from .http import call
from .once import once
from smartops_nb.records.checklist_store import Store


class Jira:
    kind = "jira"

    def __init__(self, cfg: dict[str, Any]):
        j = cfg["jira"]
        self.cfg, self.j = cfg, j
        self.base = secret(j, "url", "jira").rstrip("/")
        self.auth = (secret(j, "email", "jira"), secret(j, "api_token", "jira"))

    def _call(self, method: str, path: str, body: dict[str, Any]):
        return call(method, f"{self.base}{path}", json=body, auth=self.auth, headers={"Accept": "application/json"},
                    timeout=self.cfg["timeout_s"], total=self.cfg["total_s"])

    @staticmethod
    def adf(paragraphs: list[str], bullets: list[str] = ()) -> dict[str, Any]:
        """An Atlassian Document Format document: paragraphs, then a bullet list."""
        text = lambda t: [{"type": "text", "text": t}]  # noqa: E731
        content: list[dict[str, Any]] = [{"type": "paragraph", "content": text(p)} for p in paragraphs if p]
        if bullets:
            content.append({"type": "bulletList", "content": [
                {"type": "listItem", "content": [{"type": "paragraph", "content": text(b)}]} for b in bullets]})
        return {"type": "doc", "version": 1, "content": content}

    def create(self, title: str, paragraphs: list[str], bullets: list[str], ticket: bool) -> tuple[str, str]:
        fields = {"project": {"key": self.j["project"]}, "summary": title[:255],
                  "issuetype": {"name": self.j["ticket_type" if ticket else "issue_type"]},
                  "description": self.adf(paragraphs, bullets), "labels": list(self.j["labels"])}
        data = self._call("POST", "/rest/api/3/issue", {"fields": fields}).json()
        return str(data["key"]), f"{self.base}/browse/{data['key']}"

    def update(self, ref: str, paragraphs: list[str], bullets: list[str]) -> None:
        self._call("PUT", f"/rest/api/3/issue/{ref}", {"fields": {"description": self.adf(paragraphs, bullets)}})

    def link(self, ticket: str, incident: str) -> None:
        self._call("POST", "/rest/api/3/issueLink", {"type": {"name": self.j["link_type"]},
                                                     "inwardIssue": {"key": ticket}, "outwardIssue": {"key": incident}})


class GitHub:
    kind = "github"

    def __init__(self, cfg: dict[str, Any]):
        g = cfg["github"]
        self.cfg, self.g = cfg, g
        self.base = f"{secret(g, 'url', 'github').rstrip('/')}/repos/{g['repo']}/issues"
        self.headers = {"Authorization": f"Bearer {secret(g, 'token', 'github')}",
                        "Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}

    def _call(self, method: str, url: str, body: dict[str, Any]):
        return call(method, url, json=body, headers=self.headers, timeout=self.cfg["timeout_s"],
                    total=self.cfg["total_s"])

    @staticmethod
    def markdown(paragraphs: list[str], bullets: list[str]) -> str:
        return "\n\n".join([p for p in paragraphs if p] + ["\n".join(f"- {b}" for b in bullets)])

    def create(self, title: str, paragraphs: list[str], bullets: list[str], ticket: bool) -> tuple[str, str]:
        data = self._call("POST", self.base, {"title": title[:255], "body": self.markdown(paragraphs, bullets),
                                              "labels": list(self.g["labels"]) if not ticket else []}).json()
        return str(data["number"]), str(data["html_url"])

    def update(self, ref: str, paragraphs: list[str], bullets: list[str]) -> None:
        self._call("PATCH", f"{self.base}/{ref}", {"body": self.markdown(paragraphs, bullets)})

    def link(self, ticket: str, incident: str) -> None:
        """The ticket's body already names ``#incident``: GitHub links them."""


def trackers(cfg: dict[str, Any]) -> list[Jira | GitHub]:
    return [cls(cfg) for cls in (Jira, GitHub) if cls.kind in cfg]


def _describe(inc: Incident) -> list[str]:
    state = f"Status: {inc.stage or 'open'}" + (f" (resolved {inc.resolved:%Y-%m-%d %H:%M} UTC)" if inc.resolved else "")
    return [inc.headline, state, f"Causes: {', '.join(inc.causes) or 'not confirmed'}. {inc.diagnosis}".strip(),
            f"Mitigations: {'; '.join(inc.actions) or 'none executed'}",
            f"Incident page: {inc.pages['incident']}" if inc.pages else "", "Timeline:"]


def incident_issue(tracker: Jira | GitHub, store: Store, inc: Incident, item: str = "timeline") -> tuple[str, str]:
    """The incident's issue (created once), its description brought up to the current timeline."""
    lines, bullets = _describe(inc), timeline_text(inc)
    ref, link, created = once(store, f"{inc.incident_id}:{tracker.kind}:incident", inc.incident_id, item,
                              lambda: tracker.create(f"Incident {inc.incident_id}: {inc.title or inc.runbook}",
                                                     lines, bullets, ticket=False))
    stage_key = f"{inc.incident_id}:{tracker.kind}:incident:{inc.stage}:{len(bullets)}"

    def update() -> tuple[str, str]:
        if not created:  # a new issue already carries this timeline
            tracker.update(ref, lines, bullets)
        return ref, link

    once(store, stage_key, inc.incident_id, item, update)  # one update per state of the timeline, not per run
    return ref, link


def tickets(tracker: Jira | GitHub, store: Store, inc: Incident, parent: str) -> list[tuple[str, str]]:
    """One ticket per permanent fix, linked to the incident issue; (ref, link) of each."""
    out = []
    for fix in inc.fixes:
        digest = hashlib.sha256(fix.encode()).hexdigest()[:12]
        key = f"{inc.incident_id}:{tracker.kind}:ticket:{digest}"
        mention = f"#{parent}" if tracker.kind == "github" else parent
        ref, link, _ = once(store, key, inc.incident_id, "tickets", lambda fix=fix: tracker.create(
            f"{fix} (after incident {inc.incident_id})"[:255],
            [f"Permanent fix from the post-mortem of incident {inc.incident_id} ({mention}).",
             f"Runbook: {inc.runbook}; causes: {', '.join(inc.causes) or 'see the incident'}."], [], ticket=True))

        def link_it(ref: str = ref) -> tuple[str, str]:
            tracker.link(ref, parent)
            return ref, ""

        once(store, f"{key}:link", inc.incident_id, "tickets", link_it)
        out.append((ref, link))
    return out
