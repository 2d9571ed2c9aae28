"""Alerts in, runs out: routing and the webhook's answer, one definition for both ``serve`` modes.

In-process (:class:`smartops_nb.server.serve.Service`) and queue mode
(:class:`smartops_nb.server.queue_mode.QueueIntake`) both call :func:`plan`, then :func:`claim` each
planned run's episode in the archive index, queue it their own way unless it repeats an episode
already run, :func:`settle` the claim, and file the outcome with :func:`answer`.

Idempotent intake: Alertmanager re-sends an episode's notification when a second alert joins the
group, every ``repeat_interval``, and from each member of an HA pair (its delivery is at-least-once).
The first notification of an episode and kind (``firing``, ``resolved``) claims it in the archive
index (table ``alert_episodes``: one writer at a time, across replicas sharing a PostgreSQL index);
a later one starts nothing ("deduplicated", ``episode already run``) — unless its route has
``recheck_after`` and the last run is older: then it runs a re-check of the same incident.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from smartops_nb.alerts import routes as routes_mod
from smartops_nb.alerts.routes import Route, Routes
from smartops_nb.execution.prepare import Prepared, prepare
from smartops_nb.params import ParameterError

if TYPE_CHECKING:
    from smartops_nb.records.archive import Archive

log = logging.getLogger("smartops.serve")

BUSY = ("queue full", "shutting down", "queue unreachable")  # refusals Alertmanager should retry (503)


@dataclass
class Planned:
    """One routed alert, its run prepared (parameters checked), not yet queued."""
    alert: Mapping[str, Any]
    route: Route
    prep: Prepared
    entry: dict[str, Any]
    claimed: str = field(default="")   # what the index said of its episode: new, recheck or repeat

    @property
    def key(self) -> tuple[str, str]:
        return (self.entry["incident_id"], self.entry["kind"])


def plan(routes: Routes, doc: Mapping[str, Any]) -> tuple[dict[str, list], list[Planned]]:
    """Route every alert of one notification and prepare its run: the answer's lists so far (unrouted,
    ignored, rejected) and the runs to queue. Both modes call this; they differ only in the queueing."""
    out: dict[str, list] = {"accepted": [], "deduplicated": [], "unrouted": [], "ignored": [], "rejected": []}
    todo = []
    for alert in doc["alerts"]:
        iid, kind, name = routes_mod.incident_id(alert), alert["status"], alert["labels"]["alertname"]
        log.info("alert received: %s %s (incident %s)", name, kind, iid)
        route = routes.find(alert["labels"])
        if route is None:
            log.warning("no route for alert %s %s", name, alert["labels"])
            out["unrouted"].append({"alertname": name, "incident_id": iid})
            continue
        if kind == "resolved" and not route.confirm_on_resolved:
            out["ignored"].append({"incident_id": iid, "reason": "resolved; route does not confirm"})
            continue
        entry = {"incident_id": iid, "runbook": route.runbook, "kind": kind}
        try:
            prep = prepare(route.runbook, cli=routes_mod.run_parameters(route, alert, routes.severities),
                           base=routes.base)
        except ParameterError as e:
            log.error("alert %s: bad parameters for %s: %s", iid, route.runbook, e)
            out["rejected"].append({**entry, "reason": str(e)})
            continue
        todo.append(Planned(alert, route, prep, entry))
    return out, todo


def claim(index, p: Planned) -> str:
    """Claim ``p``'s episode in the archive index (``index``: an :class:`~smartops_nb.records.entries.Index`,
    or None: no archive, every notification runs): new, recheck or repeat. An index that cannot answer
    is logged and counts as new: a duplicate run is better than a missed incident."""
    from smartops_nb.records.entries import NEW, RECHECK

    iid, kind = p.key
    if index is None:
        p.claimed = NEW
        return NEW
    try:
        p.claimed = index.claim_episode(iid, kind, p.route.recheck_after if kind == "firing" else 0.0)
    except Exception as e:  # IndexUnavailable and the like
        log.warning("episode of incident %s (%s) not claimed (%s): running it", iid, kind, e)
        p.claimed = NEW
    if p.claimed == RECHECK:
        log.info("incident %s (%s) repeats after its route's recheck_after: a re-check runs", iid, kind)
        p.entry["recheck"] = True
    elif p.claimed != NEW:
        log.info("dedup: incident %s (%s) was already taken in (Alertmanager repeats an episode when "
                 "it regroups, re-sends or runs as a cluster); not starting another run", iid, kind)
    return p.claimed


def settle(index, p: Planned, outcome: str) -> None:
    """A new claim whose run was refused (queue full, shutting down, queue unreachable) is released:
    Alertmanager's retry of the 503 must run it."""
    from smartops_nb.records.entries import NEW

    if index is None or p.claimed != NEW or outcome in ("accepted", "deduplicated"):
        return
    try:
        index.release_episode(*p.key)
    except Exception as e:
        log.error("episode of incident %s (%s) not released (%s): its retry will be deduplicated", *p.key, e)


def repeated(p: Planned) -> bool:
    from smartops_nb.records.entries import REPEAT

    return p.claimed == REPEAT


def episode_index(archive: "Archive | None"):
    """The archive's index for claims (None without an archive)."""
    return None if archive is None else archive.index


def answer(out: dict[str, list], planned: Planned, outcome: str) -> None:
    """File one queueing outcome ("accepted", "deduplicated", or a refusal reason) in the answer."""
    if outcome in ("accepted", "deduplicated"):
        out[outcome].append(planned.entry)
    else:
        out["rejected"].append({**planned.entry, "reason": outcome})


def status_of(out: dict[str, list]) -> tuple[int, dict[str, Any]]:
    # 503 makes Alertmanager retry the notification; what was accepted dedups on the retry
    busy = [r for r in out["rejected"] if r["reason"] in BUSY]
    return (503 if busy else 202), {k: v for k, v in out.items() if v}
