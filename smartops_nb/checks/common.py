"""Checks shared by several runbooks: /health, log error lines, MiB, the workload-state table, times.

One definition each, so that two runbooks never judge the same evidence differently. Pure
functions: probe data in, :class:`Finding` (or plain data) out.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any, Iterable

import pandas as pd

from smartops_nb.findings import Finding
from smartops_nb.params import ParameterError, parse_time

MIB = 1024 * 1024
#: an error line in any runbook's logs (Python, Go, the kernel's OOM killer, the API's own levels)
ERROR_LINE = re.compile(r"\b(ERROR|FATAL|CRITICAL|PANIC|Killed|out of memory)\b|Traceback|Exception|Error:", re.I)
STATE_KEYS = ("name", "exists", "running", "status", "image", "exit_code", "restarts", "oom_killed", "started_at",
              "replicas_desired", "replicas_ready")


def mib(n: float | None) -> float | None:
    """Bytes in MiB, one decimal (None stays None)."""
    return None if n is None else round(float(n) / MIB, 1)


def time_or_none(value: Any) -> dt.datetime | None:
    """A platform's timestamp (ISO 8601, ``Z``, nanoseconds) as aware UTC; None when unset
    (empty, Docker's ``0001-01-01`` zero time) or unreadable."""
    if not value or str(value).startswith("0001-"):
        return None
    try:
        return parse_time(str(value))
    except ParameterError:
        return None


# -- /health ---------------------------------------------------------------------------------------
def health_body(h: dict[str, Any]) -> dict[str, Any]:
    """The /health body as a dict (empty when it is not JSON)."""
    try:
        body = json.loads(h.get("body") or "")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def database_status(h: dict[str, Any]) -> str | None:
    """What the API's /health body says of its database (``ok``, ``error: ...``), None if silent."""
    value = health_body(h).get("database")
    return None if value is None else str(value)


def check_health(h: dict[str, Any], latency_warn_ms: float | None = None) -> Finding:
    """GET /health: no answer or not 200 is critical; a slow 200 warns when ``latency_warn_ms`` is given."""
    data = {**h, "answered": h.get("status") is not None, "database": database_status(h)}
    if h.get("status") is None:
        return Finding("critical", f"{h.get('url')} did not answer ({h.get('error') or 'no response'}): "
                                   "the API is down or unreachable", data)
    latency = float(h.get("latency_ms") or 0)
    if h["status"] != 200:
        db = f"; database: {data['database']}" if data["database"] else ""
        body = "" if db else " ".join(str(h.get("body") or "").split())[:120]
        return Finding("critical", f"{h.get('url')} answered HTTP {h['status']} in {latency:.0f} ms{db}"
                                   + (f": {body}" if body else ""), data)
    if latency_warn_ms is not None and latency > latency_warn_ms:
        return Finding("warn", f"{h.get('url')} answered 200 but slowly ({latency:.0f} ms > "
                               f"{latency_warn_ms:g} ms)", data)
    return Finding("ok", f"{h.get('url')} answered 200 in {latency:.0f} ms", data)


# -- logs --------------------------------------------------------------------------------------------
def check_logs(lines: list[str]) -> Finding:
    errors = [line for line in lines if ERROR_LINE.search(line)]
    data = {"lines_read": len(lines), "error_lines": len(errors), "examples": errors[-5:], "tail": lines[-20:]}
    if errors:
        return Finding("warn", f"{len(errors)} error lines in the last {len(lines)} log lines; last: {errors[-1][:200]}",
                       data)
    return Finding("ok", f"no error line in the last {len(lines)} log lines", data)


# -- workload state ----------------------------------------------------------------------------------
def state_table(state: dict[str, Any]) -> pd.DataFrame:
    """The facts an engineer reads in ``docker ps`` / ``kubectl get pods``, one row per fact."""
    keys = [k for k in STATE_KEYS if k in state]
    return pd.DataFrame({"fact": keys, "value": [str(state.get(k, "")) for k in keys]})


# -- diagnosis -----------------------------------------------------------------------------------------
def measured(findings_by_check: dict[str, Finding], checks: Iterable[str]) -> str:
    """The summaries of ``checks`` that were measured (a finding that is not ``error``), joined:
    what a "not confirmed" diagnosis may say, and nothing more."""
    said = [findings_by_check[c].summary.rstrip(".") for c in checks
            if c in findings_by_check and findings_by_check[c].status != "error"]
    return "; ".join(said) + "." if said else "nothing was measured."
