"""Alerts in, runs out: routing and the webhook's answer, one definition for both ``serve`` modes.

In-process (:class:`smartops_nb.server.serve.Service`) and queue mode
(:class:`smartops_nb.server.queue_mode.QueueIntake`) both call :func:`plan`, then queue each planned
run their own way and file the outcome with :func:`answer`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping

from smartops_nb.alerts import routes as routes_mod
from smartops_nb.alerts.routes import Route, Routes
from smartops_nb.execution.prepare import Prepared, prepare
from smartops_nb.params import ParameterError

log = logging.getLogger("smartops.serve")

BUSY = ("queue full", "shutting down", "queue unreachable")  # refusals Alertmanager should retry (503)


@dataclass
class Planned:
    """One routed alert, its run prepared (parameters checked), not yet queued."""
    alert: Mapping[str, Any]
    route: Route
    prep: Prepared
    entry: dict[str, Any]

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
            prep = prepare(route.runbook, cli=routes_mod.run_parameters(route, alert), base=routes.base)
        except ParameterError as e:
            log.error("alert %s: bad parameters for %s: %s", iid, route.runbook, e)
            out["rejected"].append({**entry, "reason": str(e)})
            continue
        todo.append(Planned(alert, route, prep, entry))
    return out, todo


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
