"""Alerts in: Alertmanager's webhook payload (version 4) checked, and the routes that map alerts to runbooks.

Both ``smartops serve`` modes (in-process, and through the queue) read alerts and routes here, so
routing and dedup keys have one definition.

An incident is one *firing episode* of one alert: ``incident_id`` = ``ALERTNAME-FINGERPRINT-STARTSAT``
(:func:`episode_id`; ``STARTSAT`` as ``YYYYMMDDTHHMMSSZ``), ``detected_at`` = the alert's ``startsAt``.
Alertmanager keeps ``startsAt`` for every notification of one episode (regrouping, ``repeat_interval``
re-sends, both members of an HA pair, and the ``resolved`` one), and a new one when the alert fires
again after it resolved: that recurrence is a new incident whose ``ALERTNAME-FINGERPRINT`` (its
:func:`alert_key`) is the previous one's, which is how the two are linked.

Severity: the alert's ``severity`` label (``P1``..``P4``, or a value the routes file's ``severities:``
maps, e.g. ``critical: P1``), unless the route pins one (``severity: P1``); else the runbook's own.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import yaml

from smartops_nb import catalog
from smartops_nb.params import SEVERITIES, ParameterError, load_yaml_files


# -- routes ------------------------------------------------------------------------------------
@dataclass
class Route:
    alertname: str
    runbook: str
    match: dict[str, str] = field(default_factory=dict)          # label == value
    match_re: dict[str, re.Pattern] = field(default_factory=dict)  # label fully matches regex (compiled)
    parameters: dict[str, Any] = field(default_factory=dict)     # fixed values for this route
    from_labels: dict[str, str] = field(default_factory=dict)    # parameter <- label
    from_annotations: dict[str, str] = field(default_factory=dict)  # parameter <- annotation
    confirm_on_resolved: bool = False
    name: str = ""                                               # optional; the key defaults to alertname+matchers
    severity: str = ""                                           # pinned P1..P4 (else from the alert's label)
    recheck_after: float = 0.0                                   # s; a repeat of a run episode after this re-checks

    @property
    def key(self) -> str:
        """What a queued job names its route by (the routes file's ``name:``, else alertname and matchers):
        a worker finds the route again in its own routes file, so the job carries no parameters."""
        if self.name:
            return self.name
        matchers = [f"{k}={v}" for k, v in sorted(self.match.items())] + \
                   [f"{k}=~{p.pattern}" for k, p in sorted(self.match_re.items())]
        return self.alertname + ("{" + ",".join(matchers) + "}" if matchers else "")

    def matches(self, labels: Mapping[str, str]) -> bool:
        return (labels.get("alertname") == self.alertname
                and all(labels.get(k) == v for k, v in self.match.items())
                and all(p.fullmatch(labels.get(k, "")) for k, p in self.match_re.items()))

    def params_for(self, alert: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(self.parameters)
        for name, label in self.from_labels.items():
            if label in alert["labels"]:
                out[name] = alert["labels"][label]
        for name, key in self.from_annotations.items():
            if key in alert.get("annotations", {}):
                out[name] = alert["annotations"][key]
        return out


@dataclass
class Routes:
    routes: list[Route]
    files: list[str]                  # base parameters files (-f), as for `smartops run`
    base: dict[str, Any] = field(default_factory=dict)  # those files, read and merged once at start-up
    severities: dict[str, str] = field(default_factory=dict)  # severity label value -> P1..P4

    def find(self, labels: Mapping[str, str]) -> Route | None:
        return next((r for r in self.routes if r.matches(labels)), None)

    def by_key(self, key: str) -> Route | None:
        return next((r for r in self.routes if r.key == key), None)


def load_routes(path: str | os.PathLike, files: list[str] = ()) -> Routes:
    """Read and check a routes file: runbooks, parameter names and regexes are checked now, not per alert
    (``smartops serve`` also prepares each route's run once, which checks the values).

    The ``-f`` parameters files are read once, here: an edit to them later does not reach a running
    server (restart it), so a file broken after start-up cannot turn every alert away.
    """
    base = load_yaml_files(files)
    try:
        doc = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise ParameterError(f"routes file not found: {path}") from None
    except yaml.YAMLError as e:
        raise ParameterError(f"routes file {path} is not valid YAML: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("routes"), list):
        raise ParameterError(f"routes file {path} needs a 'routes:' list")
    default_confirm = bool(doc.get("confirm_on_resolved", False))
    severities = _severities(doc.get("severities") or {}, f"routes file {path}")
    default_recheck = _duration(doc.get("recheck_after"), f"routes file {path}")
    keys = {"alertname", "runbook", "match", "match_re", "parameters", "from_labels", "from_annotations",
            "confirm_on_resolved", "name", "severity", "recheck_after"}
    routes = []
    for i, r in enumerate(doc["routes"]):
        where = f"routes file {path}, route {i + 1}"
        if not isinstance(r, dict) or not r.get("alertname") or not r.get("runbook"):
            raise ParameterError(f"{where}: needs alertname and runbook")
        if set(r) - keys:
            raise ParameterError(f"{where}: unknown key {sorted(set(r) - keys)[0]!r}")
        for k in ("match", "match_re", "parameters", "from_labels", "from_annotations"):
            if not isinstance(r.get(k) or {}, dict):
                raise ParameterError(f"{where}: {k} must be a mapping")
        match = {str(k): str(v) for k, v in (r.get("match") or {}).items()}
        route = Route(str(r["alertname"]), str(r["runbook"]), match, _compile(r.get("match_re") or {}, where),
                      dict(r.get("parameters") or {}), dict(r.get("from_labels") or {}),
                      dict(r.get("from_annotations") or {}), bool(r.get("confirm_on_resolved", default_confirm)),
                      str(r.get("name") or ""), _pinned(r.get("severity"), where),
                      _duration(r["recheck_after"], where) if "recheck_after" in r else default_recheck)
        known = set(_runbook(route.runbook, where).parameters)
        for name in [*route.from_labels, *route.from_annotations]:
            if name not in known:
                raise ParameterError(f"{where}: runbook {route.runbook} has no parameter {name!r}")
        if any(other.key == route.key for other in routes):
            raise ParameterError(f"{where}: another route has the same key {route.key!r} (give one a name:)")
        routes.append(route)
    return Routes(routes, list(files), base, severities)


_DURATION = re.compile(r"(\d+)([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(value: Any, where: str) -> float:
    """``30m``, ``1h``, ``90s``, ``2d`` (Alertmanager's style) in seconds; absent or 0: never."""
    if value in (None, 0, "0", ""):
        return 0.0
    m = _DURATION.fullmatch(str(value).strip())
    if not m:
        raise ParameterError(f"{where}: recheck_after must be a duration such as 30m or 1h, got {value!r}")
    return float(int(m[1]) * _UNIT_S[m[2]])


def _pinned(value: Any, where: str) -> str:
    if value in (None, ""):
        return ""
    if str(value) not in SEVERITIES:
        raise ParameterError(f"{where}: severity must be one of {', '.join(SEVERITIES)}, got {value!r}")
    return str(value)


def _severities(mapping: Any, where: str) -> dict[str, str]:
    """The routes file's ``severities:`` (label value -> P1..P4); P1..P4 themselves always map to themselves."""
    if not isinstance(mapping, dict):
        raise ParameterError(f"{where}: severities must be a mapping such as {{critical: P1, warning: P2}}")
    out = {s: s for s in SEVERITIES}
    for label, sev in mapping.items():
        out[str(label)] = _pinned(sev, f"{where}, severities {label}")
    return out


def _compile(match_re: Mapping[str, Any], where: str) -> dict[str, re.Pattern]:
    out = {}
    for label, pattern in match_re.items():
        try:
            out[str(label)] = re.compile(str(pattern))
        except re.error as e:
            raise ParameterError(f"{where}: match_re {label}: {str(pattern)!r} is not a valid regex: {e}") from None
    return out


def _runbook(runbook_id: str, where: str) -> catalog.Runbook:
    try:
        return catalog.get(runbook_id)
    except KeyError:
        raise ParameterError(f"{where}: unknown runbook {runbook_id!r}") from None


# -- the payload -------------------------------------------------------------------------------
#: What one webhook post may carry, checked before anything is routed or queued. Alertmanager's own
#: payloads are far inside these (its nesting is 4 deep); Alertmanager's ``max_alerts`` (webhook_config)
#: keeps a large group under MAX_ALERTS. Too many or too large → 413, too deep → 422, each naming the limit.
MAX_ALERTS = 1000           # alerts in one post
MAX_LABELS = 64             # labels of one alert, and annotations of one alert
MAX_KEY_CHARS = 256         # a label or annotation name (any object key in the payload)
MAX_VALUE_CHARS = 32_768    # a label or annotation value, a fingerprint (any string in the payload)
MAX_DEPTH = 8               # JSON nesting anywhere in the payload
#: An incident id longer than this is cut and given a hash suffix (it is a URL path segment and a log field).
MAX_ID_CHARS = 200


class BadPayload(ValueError):
    """A payload refused; ``status`` is the HTTP answer (400 malformed, 413 too large, 422 too deep)."""
    status = 400


class PayloadTooLarge(BadPayload):
    status = 413


class PayloadTooDeep(BadPayload):
    status = 422


def parse_payload(body: bytes) -> dict[str, Any]:
    """Alertmanager's webhook payload, checked and bounded; BadPayload says what is wrong."""
    try:
        doc = json.loads(body)
    except RecursionError:
        raise BadPayload(f"not JSON this parser can read: nested too deep (limit {MAX_DEPTH} levels)") from None
    except ValueError as e:  # UnicodeDecodeError included
        raise BadPayload(f"not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise BadPayload("payload is not a JSON object")
    if str(doc.get("version")) != "4":
        raise BadPayload(f"unsupported payload version {str(doc.get('version'))[:20]!r} (expected \"4\")")
    alerts = doc.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        raise BadPayload("'alerts' must be a non-empty list")
    if len(alerts) > MAX_ALERTS:
        raise PayloadTooLarge(f"{len(alerts)} alerts in one post (limit MAX_ALERTS = {MAX_ALERTS}; "
                              "set max_alerts in Alertmanager's webhook_config)")
    check_bounds(doc)
    for i, a in enumerate(alerts):
        if not isinstance(a, dict):
            raise BadPayload(f"alert {i} is not an object")
        if a.get("status") not in ("firing", "resolved"):
            raise BadPayload(f"alert {i}: status must be firing or resolved")
        labels = a.get("labels")
        if not isinstance(labels, dict) or not isinstance(labels.get("alertname"), str) or not all(
                isinstance(v, str) for v in labels.values()):
            raise BadPayload(f"alert {i}: labels must be strings and include alertname")
        annotations = a.get("annotations", {})
        if not isinstance(annotations, dict):
            raise BadPayload(f"alert {i}: annotations must be an object")
        for what, found in (("labels", labels), ("annotations", annotations)):
            if len(found) > MAX_LABELS:
                raise PayloadTooLarge(f"alert {i}: {len(found)} {what} (limit MAX_LABELS = {MAX_LABELS})")
        if not isinstance(a.get("fingerprint"), str) or not a["fingerprint"]:
            raise BadPayload(f"alert {i}: fingerprint missing")
        try:
            datetime.fromisoformat(str(a.get("startsAt")).replace("Z", "+00:00"))
        except ValueError:
            raise BadPayload(f"alert {i}: startsAt is not an RFC 3339 time") from None
    return doc


def alert_key(alert: Mapping[str, Any]) -> str:
    """``ALERTNAME-FINGERPRINT``: the same for every episode of one alert (same labels); URL-safe and short
    enough that the episode's stamp still fits in MAX_ID_CHARS (:func:`url_safe_id`)."""
    return url_safe_id(f"{alert['labels']['alertname']}-{alert['fingerprint']}", MAX_ID_CHARS - len("-YYYYMMDDTHHMMSSZ"))


def check_bounds(doc: Any) -> None:
    """Every object key, string and nesting level of a parsed payload within the limits, and every string
    writable as UTF-8 (JSON's ``\\ud800`` escape gives a lone surrogate that no file, log or database takes).
    Iterative: a deep payload cannot exhaust the stack here."""
    stack: list[tuple[Any, int, str]] = [(doc, 0, "payload")]
    while stack:
        node, depth, where = stack.pop()
        if isinstance(node, str):
            _check_string(node, where, MAX_VALUE_CHARS, "MAX_VALUE_CHARS")
            continue
        if not isinstance(node, (dict, list)):
            continue
        if depth >= MAX_DEPTH:
            raise PayloadTooDeep(f"{where}: nested deeper than MAX_DEPTH = {MAX_DEPTH} levels")
        if isinstance(node, dict):
            for k, v in node.items():
                _check_string(k, f"{where}: a key", MAX_KEY_CHARS, "MAX_KEY_CHARS")
                stack.append((v, depth + 1, f"{where}.{k}"))
        else:
            stack.extend((v, depth + 1, f"{where}[{i}]") for i, v in enumerate(node))


def _check_string(text: str, where: str, limit: int, name: str) -> None:
    if len(text) > limit:
        raise PayloadTooLarge(f"{where[:120]}: {len(text)} characters (limit {name} = {limit})")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeError:
            raise BadPayload(f"{where[:120]}: not valid Unicode (a lone surrogate such as \\ud800)") from None


_NOT_IN_IDS = re.compile(r"[\x00-\x20\x7f-\xa0/\\?#%\u2028\u2029]+")


def url_safe_id(text: str, limit: int = MAX_ID_CHARS) -> str:
    """An id fit for a URL path segment, a file name part and a log line: whitespace, control characters,
    ``/ \\ ? # %`` become ``_``; longer than ``limit``, it is cut and ends in a hash of the whole
    (ids stay distinct)."""
    safe = _NOT_IN_IDS.sub("_", text)
    if len(safe) <= limit:
        return safe
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{safe[:limit - 17]}~{digest}"


def episode_stamp(starts_at: Any) -> str:
    """An alert's ``startsAt`` as ``YYYYMMDDTHHMMSSZ`` (UTC, whole seconds)."""
    t = datetime.fromisoformat(str(starts_at).replace("Z", "+00:00"))
    if t.tzinfo is not None:
        t = t.astimezone(timezone.utc)
    return t.strftime("%Y%m%dT%H%M%SZ")


def episode_id(alert: Mapping[str, Any]) -> str:
    """The firing episode: ``ALERTNAME-FINGERPRINT-STARTSAT`` (see the module docstring)."""
    return f"{alert_key(alert)}-{episode_stamp(alert['startsAt'])}"


_EPISODE_TAIL = re.compile(r"-\d{8}T\d{6}Z$")


def alert_key_of(incident: str) -> str | None:
    """The ``ALERTNAME-FINGERPRINT`` an episode's incident id starts with (None: not an episode id,
    e.g. a manual run's own id or one written before episodes)."""
    return incident[:m.start()] if (m := _EPISODE_TAIL.search(incident or "")) else None


def incident_id(alert: Mapping[str, Any]) -> str:
    return episode_id(alert)


def severity_of(route: Route, alert: Mapping[str, Any], severities: Mapping[str, str]) -> str | None:
    """The run's severity: the route's pin, else the alert's ``severity`` label mapped (None: neither,
    or a label value nobody mapped: the runbook's own severity then)."""
    if route.severity:
        return route.severity
    if "severity" in route.parameters:
        return None  # fixed by the route's parameters (params_for already has it)
    return (severities or {s: s for s in SEVERITIES}).get(alert["labels"].get("severity", ""))


def dedup_key(alert: Mapping[str, Any]) -> str:
    """One run per incident and kind at a time: a ``resolved`` confirming run is not the firing run."""
    return f"{incident_id(alert)}:{alert['status']}"


def run_parameters(route: Route, alert: Mapping[str, Any], severities: Mapping[str, str] | None = None
                   ) -> dict[str, Any]:
    """The run's own parameters for one alert (on top of the ``-f`` files): both serve modes and the
    queue's workers build them here, so an alert gives the same run wherever it runs."""
    out = {**route.params_for(alert), "incident_id": incident_id(alert),
           "detected_at": str(alert["startsAt"]).replace("Z", "+00:00")}
    severity = severity_of(route, alert, severities or {})
    if severity:
        out["severity"] = severity
    return out


def job_alert(alert: Mapping[str, Any]) -> dict[str, Any]:
    """What a queued job keeps of an alert: what routing and parameters read, nothing else."""
    return {k: alert[k] for k in ("status", "labels", "annotations", "fingerprint", "startsAt") if k in alert}
