"""The ``post_incident:`` section of a parameters file: which of the seed's checklist items SmartOps
carries out, and where. Every integration is optional; credentials are ``env:NAME`` references,
resolved at use (:func:`secret`) and never written into a record, a log line or the index::

    post_incident:
      timeout_s: 10                    # each HTTP call / SMTP conversation
      total_s: 60                      # one item's retries (429/5xx, Retry-After honoured) end by then
      statuspage: {page_id: abc123, api_key: env:STATUSPAGE_API_KEY, component_ids: [cmp1]}
      webhook: {url: env:STATUS_WEBHOOK_URL}
      jira: {url: https://acme.atlassian.net, email: ops@acme.example, api_token: env:JIRA_API_TOKEN,
             project: OPS}
      github: {repo: acme/ops, token: env:GITHUB_TOKEN}
      smtp: {host: smtp.acme.example, port: 587, starttls: true, username: env:SMTP_USER,
             password: env:SMTP_PASSWORD, sender: smartops@acme.example}
      meeting: {timezone: Europe/Berlin, attendees: [sre-leads@acme.example], people: {alice: alice@acme.example}}
      stakeholders: {to: [stakeholders@acme.example]}
"""
from __future__ import annotations

import re
import zoneinfo
from typing import Any, Mapping

from smartops_nb import redact
from smartops_nb.params import ParameterError, resolve_env

SECTION = "post_incident"
#: The seed's six checklist items, in its order: (id for --redo, the seed's words).
ITEMS = (
    ("status-page", "Update status page"),
    ("stakeholders", "Notify stakeholders of resolution"),
    ("timeline", "Document timeline in incident tracker"),
    ("meeting", "Schedule post-mortem meeting (within 48 hours for P1/P2)"),
    ("tickets", "Create tickets for permanent fixes"),
    ("learnings", "Update runbook with learnings"),
)
ITEM_IDS = tuple(i for i, _ in ITEMS)
TITLES = dict(ITEMS)

STATUSPAGE_URL = "https://api.statuspage.io"
GITHUB_URL = "https://api.github.com"
_EMAIL = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")

# integration: (required keys, optional keys with defaults)
_SHAPES: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "statuspage": (("page_id", "api_key"), {"url": STATUSPAGE_URL, "component_ids": []}),
    "webhook": (("url",), {"headers": {}}),
    "jira": (("url", "email", "api_token", "project"),
             {"issue_type": "Incident", "ticket_type": "Task", "link_type": "Relates", "labels": ["smartops"]}),
    "github": (("repo", "token"), {"url": GITHUB_URL, "labels": ["incident"]}),
    "smtp": (("host", "sender"), {"port": 587, "starttls": True, "username": "", "password": ""}),
    "meeting": ((), {"timezone": "UTC", "hours": [9, 17], "duration_minutes": 60, "attendees": [], "people": {},
                     "severities": ["P1", "P2"], "within_hours": 48}),
    "stakeholders": (("to",), {}),
}
_SECRET_KEYS = ("api_key", "api_token", "token", "password")
_TOP = {"timeout_s": 10.0, "total_s": 60.0}


def load(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The validated section (``{}`` when absent). ParameterError (one line, exit 2) when malformed."""
    section = (config or {}).get(SECTION)
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise ParameterError(f"'{SECTION}' must be a mapping ({', '.join(_SHAPES)}, timeout_s, total_s)")
    unknown = set(section) - set(_SHAPES) - set(_TOP)
    if unknown:
        raise ParameterError(f"unknown {SECTION} setting {sorted(unknown)[0]!r} ({', '.join(_SHAPES)}, "
                             "timeout_s, total_s)")
    out: dict[str, Any] = {}
    for key, default in _TOP.items():
        value = section.get(key, default)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= 600:
            raise ParameterError(f"{SECTION} {key} must be a number of seconds in (0, 600]")
        out[key] = float(value)
    for kind, (required, optional) in _SHAPES.items():
        entry = section.get(kind)
        if entry is None:
            continue
        if not isinstance(entry, Mapping):
            raise ParameterError(f"{SECTION} {kind} must be a mapping")
        extra = set(entry) - set(required) - set(optional)
        if extra:
            raise ParameterError(f"unknown {SECTION} {kind} setting {sorted(extra)[0]!r} "
                                 f"(known: {', '.join(sorted({*required, *optional}))})")
        missing = [k for k in required if not entry.get(k)]
        if missing:
            raise ParameterError(f"{SECTION} {kind} needs {missing[0]}: (a value or env:NAME)")
        out[kind] = {**optional, **entry}
    _check(out)
    return out


def _check(cfg: dict[str, Any]) -> None:
    for kind in ("statuspage", "jira", "github"):
        url = cfg.get(kind, {}).get("url", "")
        if url and not str(url).startswith(("http://", "https://", redact.ENV_PREFIX)):
            raise ParameterError(f"{SECTION} {kind} url must be http(s)://... or env:NAME, got {url!r}")
    if "github" in cfg and not re.fullmatch(r"[\w.-]+/[\w.-]+", str(cfg["github"]["repo"])):
        raise ParameterError(f"{SECTION} github repo must be OWNER/NAME, got {cfg['github']['repo']!r}")
    if "statuspage" in cfg and not isinstance(cfg["statuspage"]["component_ids"], list):
        raise ParameterError(f"{SECTION} statuspage component_ids must be a list")
    meeting = cfg.get("meeting")
    if meeting is not None:
        try:
            zoneinfo.ZoneInfo(str(meeting["timezone"]))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ParameterError(f"{SECTION} meeting timezone {meeting['timezone']!r} is not an IANA time zone") from None
        hours = meeting["hours"]
        if not (isinstance(hours, list) and len(hours) == 2 and all(isinstance(h, int) for h in hours)
                and 0 <= hours[0] < hours[1] <= 24):
            raise ParameterError(f"{SECTION} meeting hours must be [START, END] whole hours, e.g. [9, 17]")
        if not isinstance(meeting["people"], Mapping):
            raise ParameterError(f"{SECTION} meeting people must map a name (operator, approver) to an e-mail")
        _emails(list(meeting["people"].values()), "meeting people")
        _emails(meeting["attendees"], "meeting attendees")
        if "smtp" not in cfg:
            raise ParameterError(f"{SECTION} meeting needs smtp: (the invitation is sent by e-mail)")
    if "stakeholders" in cfg:
        _emails(cfg["stakeholders"]["to"], "stakeholders to")
        if "smtp" not in cfg:
            raise ParameterError(f"{SECTION} stakeholders needs smtp: (the summary is sent by e-mail)")
    if "smtp" in cfg:
        _emails([cfg["smtp"]["sender"]], "smtp sender")
        port = cfg["smtp"]["port"]
        if not isinstance(port, int) or not 0 < port < 65536:
            raise ParameterError(f"{SECTION} smtp port must be a port number, got {port!r}")


def _emails(values: Any, what: str) -> None:
    if not isinstance(values, list) or not all(isinstance(v, str) and _EMAIL.match(v) for v in values):
        raise ParameterError(f"{SECTION} {what} must be a list of e-mail addresses, got {values!r}")


def secret(entry: Mapping[str, Any], key: str, kind: str) -> str:
    """A setting's value with ``env:NAME`` resolved, registered as a secret so no text shows it."""
    value = resolve_env(entry.get(key, ""), name=f"{SECTION} {kind} {key}")
    if value and (key in _SECRET_KEYS or str(entry.get(key, "")).startswith(redact.ENV_PREFIX)):
        redact.register_secret(value)
    return str(value or "")
