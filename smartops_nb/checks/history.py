"""What Prometheus's history says (shared by high-latency, api-down and db-pool-exhausted).

Pure functions over the frames of :func:`smartops_nb.probes.prometheus.api_history` (or ``None``
when no ``prometheus_url`` was given: the runbook sampled ``/metrics`` itself). The history is
context for the on-call engineer (when did it start, how does it compare with the alert); the
runbooks' diagnoses are made from their live checks, so these findings name no cause.
"""
from __future__ import annotations

from enum import StrEnum

import math
from typing import Any

import pandas as pd

from smartops_nb.findings import Finding


class Step(StrEnum):
    """The step ids of this runbook's notebook cells (``run.step(Step.X, ...)``), read by the checks below."""

    HISTORY = "prometheus-history"


NO_PROMETHEUS = "no prometheus_url: sampled /metrics instead"


def _peak(df: pd.DataFrame | None) -> dict[str, float]:
    """Per series: the maximum over the window (NaN-only series left out)."""
    if df is None or len(df) == 0:
        return {}
    out = {}
    for col in df.columns:
        if col != "at":
            m = pd.to_numeric(df[col], errors="coerce").max()
            if not (isinstance(m, float) and math.isnan(m)):
                out[col] = round(float(m), 4)
    return out


def _first_above(df: pd.DataFrame | None, threshold: float) -> str | None:
    if df is None or len(df) == 0:
        return None
    values = df.drop(columns=["at"]).apply(pd.to_numeric, errors="coerce")
    above = df["at"][(values > threshold).any(axis=1)]
    return above.iloc[0].strftime("%Y-%m-%dT%H:%M:%SZ") if len(above) else None


def _total(df: pd.DataFrame | None) -> pd.Series:
    if df is None or len(df) == 0:
        return pd.Series(dtype=float)
    return df.drop(columns=["at"]).apply(pd.to_numeric, errors="coerce").sum(axis=1, min_count=1)


def summarise(frames: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Peaks over the window: p95/p99 per handler, request and 5xx rates, connections."""
    conns = _total(frames.get("db_connections"))
    limit = _peak(frames.get("db_max_connections")).get("value")
    return {
        "p95_peak_s": _peak(frames.get("p95")), "p99_peak_s": _peak(frames.get("p99")),
        "request_rate_peak": _peak(frames.get("request_rate")), "error_rate_peak": _peak(frames.get("error_rate")),
        "db_connections_peak": None if conns.dropna().empty else int(conns.max()),
        "db_max_connections": None if limit is None else int(limit),
        "pool_in_use_peak": _peak(frames.get("pool_in_use")).get("value"),
        "points": max((len(df) for df in frames.values()), default=0),
    }


def check_history(frames: dict[str, pd.DataFrame] | None, latency_threshold_s: float = 2.0,
                  connections_warn_pct: float = 90.0, error_rate_warn: float = 0.1) -> Finding:
    """``warn`` when the window shows the symptoms (p95 over the threshold, 5xx, connections near
    the limit), ``ok`` otherwise or without Prometheus; ``warn`` too when Prometheus has no API data."""
    if frames is None:
        return Finding("ok", NO_PROMETHEUS, {"prometheus": False})
    s = summarise(frames)
    s["prometheus"] = True
    s["latency_threshold_s"] = latency_threshold_s
    if not s["points"] or not (s["p95_peak_s"] or s["request_rate_peak"] or s["db_connections_peak"] is not None):
        return Finding("warn", "Prometheus has no SmartAmazon series in the window: is it scraping the API "
                               "(and the database exporter)?", s)
    notes, flagged = [], False
    if s["p95_peak_s"]:
        handler, worst = max(s["p95_peak_s"].items(), key=lambda kv: kv[1])
        s["p95_first_above_threshold_at"] = _first_above(frames.get("p95"), latency_threshold_s)
        notes.append(f"p95 peaked at {worst:.2f} s on {handler}")
        if worst > latency_threshold_s:
            flagged = True
            notes[-1] += f" (above {latency_threshold_s:g} s since {s['p95_first_above_threshold_at']})"
    errors = sum(s["error_rate_peak"].values())
    if errors > error_rate_warn:
        flagged = True
        notes.append(f"5xx up to {errors:.2f}/s")
    if s["request_rate_peak"]:
        notes.append(f"requests up to {sum(s['request_rate_peak'].values()):.1f}/s")
    if s["db_connections_peak"] is not None:
        text = f"{s['db_connections_peak']} client connections at most"
        if s["db_max_connections"]:
            pct = 100 * s["db_connections_peak"] / s["db_max_connections"]
            text += f" of max_connections {s['db_max_connections']} ({pct:.0f}%)"
            if pct >= connections_warn_pct:
                flagged = True
        notes.append(text)
    return Finding("warn" if flagged else "ok", "history: " + "; ".join(notes), s)
