"""Read history from Prometheus's HTTP API (``/api/v1/query``, ``/api/v1/query_range``).

Read-only and bounded: every request has a timeout, a range query asks for at most
``MAX_POINTS`` points per series. A failure is raised as :class:`PrometheusError` whose message is
one line (unreachable, HTTP status, Prometheus's own ``error``), so that a runbook step turns it
into an ``error`` finding that says why.

The queries of :func:`api_history` are those of the shipped alert rules (``deploy/prometheus/``):
latency quantiles from ``http_request_duration_seconds_bucket``, request and 5xx rates, the
PostgreSQL client connections (``pg_stat_activity_count``, postgres_exporter's name) and the API's own DB pool.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pandas as pd

from smartops_nb import redact
from smartops_nb.support.reasons import flat

MAX_POINTS = 300          # per series; the step grows with the window
HISTOGRAM = "http_request_duration_seconds"
USER_TRAFFIC = 'handler!="/metrics"'

#: name -> (PromQL, label that names the series). ``{q}`` is a quantile.
LATENCY_Q = (f'histogram_quantile({{q}}, sum by (handler, le) (rate({HISTOGRAM}_bucket{{{{{USER_TRAFFIC}}}}}[1m])))',
             "handler")
QUERIES: dict[str, tuple[str, str]] = {
    "request_rate": (f"sum by (handler) (rate({HISTOGRAM}_count{{{USER_TRAFFIC}}}[1m]))", "handler"),
    "error_rate": (f'sum by (handler) (rate({HISTOGRAM}_count{{{USER_TRAFFIC},status=~"5.."}}[1m]))', "handler"),
    "db_connections": ("sum by (state) (pg_stat_activity_count)", "state"),
    "db_max_connections": ("max(pg_settings_max_connections)", ""),
    "pool_in_use": ("sum(smartamazon_db_pool_in_use)", ""),
    "pool_size": ("sum(smartamazon_db_pool_size)", ""),
}


class PrometheusError(RuntimeError):
    """Prometheus could not answer a query; the message is one line."""


_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def parse_duration(text: str | float | int) -> float:
    """A Prometheus duration (``30m``, ``1h30m``, ``90s``; a bare number is seconds) in seconds."""
    if isinstance(text, (int, float)):
        return float(text)
    s = str(text).strip()
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return float(s)
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", s)
    if not parts or "".join(n + u for n, u in parts) != s:
        raise ValueError(f"not a duration: {text!r} (expected e.g. 30m, 1h, 90s)")
    return float(sum(int(n) * _UNITS[u] for n, u in parts))


def _one_line(text: str) -> str:
    return redact.scrub(flat(text, 300))


def _get(base_url: str, path: str, params: dict[str, Any], timeout: float) -> Any:
    if not base_url:
        raise PrometheusError("no Prometheus URL given")
    url = base_url.rstrip("/") + path + "?" + urllib.parse.urlencode(params)
    where = redact.mask_url(base_url)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            body = r.read()
    except urllib.error.HTTPError as e:   # Prometheus answers 400/422/503 with a JSON error
        try:
            err = json.loads(e.read()).get("error", "")
        except Exception:
            err = ""
        raise PrometheusError(_one_line(f"{where}{path}: HTTP {e.code}" + (f": {err}" if err else ""))) from None
    except Exception as e:  # refused, timeout, DNS
        reason = getattr(e, "reason", None) or e
        raise PrometheusError(_one_line(f"{where} unreachable: {type(reason).__name__}: {reason}")) from None
    try:
        doc = json.loads(body)
    except ValueError:
        raise PrometheusError(_one_line(f"{where}{path}: not a Prometheus API answer: {body[:80]!r}")) from None
    if doc.get("status") != "success":
        raise PrometheusError(_one_line(f"{where}{path}: {doc.get('errorType', 'error')}: {doc.get('error', '')}"))
    return doc["data"]


def _ts(t: dt.datetime | float) -> float:
    return t.timestamp() if isinstance(t, dt.datetime) else float(t)


def _value(v: str) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def query(base_url: str, promql: str, at: dt.datetime | float | None = None,
          timeout: float = 10.0) -> list[dict[str, Any]]:
    """An instant query: ``[{labels, value}]`` (a scalar answer is one row with no labels)."""
    params: dict[str, Any] = {"query": promql, "timeout": f"{timeout:g}s"}
    if at is not None:
        params["time"] = _ts(at)
    data = _get(base_url, "/api/v1/query", params, timeout)
    if data["resultType"] in ("scalar", "string"):
        return [{"labels": {}, "value": _value(data["result"][1])}]
    return [{"labels": r["metric"], "value": _value(r["value"][1])} for r in data["result"]]


def step_for(start: dt.datetime, end: dt.datetime, min_step: float = 1.0) -> float:
    """A step that keeps a range query under ``MAX_POINTS`` points (whole seconds)."""
    span = max((end - start).total_seconds(), 1.0)
    return float(max(min_step, math.ceil(span / MAX_POINTS)))


def query_range(base_url: str, promql: str, start: dt.datetime, end: dt.datetime, step: float | None = None,
                label: str = "", timeout: float = 10.0) -> pd.DataFrame:
    """A range query as a wide frame: column ``at`` (UTC datetimes), one column per series.

    Series are named by their ``label`` value (or their full label set, or ``value`` for a single
    unlabelled series). No series at all gives a frame with only ``at``.
    """
    step = step or step_for(start, end)
    data = _get(base_url, "/api/v1/query_range",
                {"query": promql, "start": _ts(start), "end": _ts(end), "step": f"{step:g}",
                 "timeout": f"{timeout:g}s"}, timeout)
    columns: dict[str, pd.Series] = {}
    for r in data["result"]:
        labels = r["metric"]
        name = (labels.get(label) if label else None) or (
            ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "__name__") or "value")
        idx = pd.to_datetime([float(t) for t, _ in r["values"]], unit="s", utc=True)
        columns[name] = pd.Series([_value(v) for _, v in r["values"]], index=idx)
    if not columns:
        return pd.DataFrame({"at": pd.Series([], dtype="datetime64[ns, UTC]")})
    df = pd.DataFrame(columns).sort_index()
    df.index.name = "at"
    return df.reset_index()[["at", *sorted(columns)]]


def window(detected_at: str | dt.datetime, lookback: str | float,
           now: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime]:
    """``(start, end)``: the last ``lookback`` up to now, widened to show ``detected_at`` with
    the lookback's tenth before it when the alert is older than that."""
    from smartops_nb.params import parse_time, utcnow

    end = now or utcnow()
    span = dt.timedelta(seconds=parse_duration(lookback))
    start = end - span
    detected = parse_time(detected_at) if isinstance(detected_at, str) and detected_at else detected_at
    if isinstance(detected, dt.datetime) and detected - span / 10 < start:
        start = detected - span / 10
    return start, end


def api_history(base_url: str, start: dt.datetime, end: dt.datetime, timeout: float = 10.0,
                which: tuple[str, ...] = ("p95", "p99", "request_rate", "error_rate", "db_connections",
                                          "db_max_connections", "pool_in_use", "pool_size")) -> dict[str, pd.DataFrame]:
    """The API's history over ``[start, end]``: one wide frame per name in ``which``.

    ``p95``/``p99``: latency quantile per handler (s); ``request_rate``/``error_rate``: requests/s
    per handler (errors = 5xx); ``db_connections``: PostgreSQL client connections by state;
    ``db_max_connections``, ``pool_in_use``, ``pool_size``: one series each.
    """
    step = step_for(start, end)
    out = {}
    for name in which:
        if name.startswith("p") and name[1:].isdigit():
            promql, label = LATENCY_Q[0].format(q=int(name[1:]) / 100), LATENCY_Q[1]
        else:
            promql, label = QUERIES[name]
        out[name] = query_range(base_url, promql, start, end, step, label=label, timeout=timeout)
    return out


def history_or_none(base_url: str, detected_at: str, lookback: str | float,
                    timeout: float = 10.0) -> dict[str, pd.DataFrame] | None:
    """:func:`api_history` over :func:`window` when ``base_url`` is given; ``None`` (nothing asked)
    when it is empty, so that a runbook falls back to sampling ``/metrics`` itself."""
    if not base_url:
        return None
    start, end = window(detected_at, lookback)
    return api_history(base_url, start, end, timeout)


def target(base_url: str) -> str:
    return redact.mask_url(base_url)
