"""Scrape a Prometheus ``/metrics`` endpoint and turn histograms into per-endpoint quantiles.

The exposition format is parsed by ``prometheus_client``'s own parser. Latency quantiles are
computed from the *difference* of bucket counters between the first and the last scrape of a
window, so they describe the window and not the whole life of the process.
"""
from __future__ import annotations

import math
import time
import urllib.request
from typing import Any

import pandas as pd

from smartops_nb import redact

METRICS_PATH = "/metrics"
QUANTILES = (0.5, 0.95, 0.99)


def metrics_url(api_url: str) -> str:
    return api_url if api_url.rstrip("/").endswith(METRICS_PATH) else api_url.rstrip("/") + METRICS_PATH


def scrape(url: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    """One scrape: every sample as ``{name, labels, value}`` (raises when the endpoint fails)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=timeout) as r:
        text = r.read().decode("utf-8", "replace")
    return [{"name": s.name, "labels": dict(s.labels), "value": float(s.value)}
            for fam in text_string_to_metric_families(text) for s in fam.samples]


def sample(api_url: str, seconds: float = 10.0, interval: float = 1.0, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Scrape every ``interval`` s for ``seconds`` s: ``[{at, samples}]`` (at least two scrapes)."""
    url = metrics_url(api_url)
    out = []
    start = time.monotonic()
    while True:
        out.append({"at": time.monotonic(), "samples": scrape(url, timeout)})
        if len(out) >= 2 and time.monotonic() - start >= seconds:
            return out
        time.sleep(max(0.0, min(interval, seconds - (time.monotonic() - start))) or interval)


def _sum_by(samples: list[dict], name: str, by: str, le: bool = False) -> dict:
    out: dict = {}
    for s in samples:
        if s["name"] == name:
            key = (s["labels"].get(by, ""), float(s["labels"]["le"])) if le else s["labels"].get(by, "")
            out[key] = out.get(key, 0.0) + s["value"]
    return out


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus's ``histogram_quantile``: linear interpolation inside cumulative buckets."""
    buckets = sorted(buckets)
    total = buckets[-1][1] if buckets else 0
    if total <= 0:
        return math.nan
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):  # in the +Inf bucket: the best answer is the highest finite bound
                return prev_le
            width = count - prev_count
            return prev_le + (le - prev_le) * ((rank - prev_count) / width if width else 1.0)
        prev_le, prev_count = le, count
    return prev_le


def window_latency(scrapes: list[dict[str, Any]], histogram: str = "http_request_duration_seconds",
                   by: str = "handler", quantiles=QUANTILES) -> pd.DataFrame:
    """Per ``by`` label: requests, request rate and latency quantiles over the scrape window."""
    first, last = scrapes[0], scrapes[-1]
    span = max(last["at"] - first["at"], 1e-6)
    b0 = _sum_by(first["samples"], histogram + "_bucket", by, le=True)
    b1 = _sum_by(last["samples"], histogram + "_bucket", by, le=True)
    s0 = _sum_by(first["samples"], histogram + "_sum", by)
    s1 = _sum_by(last["samples"], histogram + "_sum", by)
    rows = []
    for key in sorted({k[0] for k in b1}):
        buckets = [(le, b1[(k, le)] - b0.get((k, le), 0.0)) for (k, le) in b1 if k == key]
        n = max((c for _, c in buckets), default=0.0)
        row = {by: key, "requests": int(round(n)), "rps": round(n / span, 2),
               "mean_s": round((s1.get(key, 0) - s0.get(key, 0)) / n, 4) if n else math.nan}
        for q in quantiles:
            row[f"p{int(q * 100)}_s"] = round(bucket_quantile(q, buckets), 4) if n else math.nan
        rows.append(row)
    cols = [by, "requests", "rps", "mean_s"] + [f"p{int(q * 100)}_s" for q in quantiles]
    return pd.DataFrame(rows, columns=cols)


def snapshot(api_url: str, timeout: float = 5.0) -> dict[str, Any]:
    """One timed scrape, ``{at, samples}``: two of them bound a window for :func:`counter_delta`."""
    return {"at": time.monotonic(), "samples": scrape(metrics_url(api_url), timeout)}


def series(scrapes: list[dict[str, Any]], name: str) -> pd.DataFrame:
    """A gauge or counter (summed over its labels) at each scrape: columns ``t_s``, ``value``."""
    t0 = scrapes[0]["at"] if scrapes else 0
    rows = [{"t_s": round(s["at"] - t0, 2),
             "value": sum(x["value"] for x in s["samples"] if x["name"] == name)} for s in scrapes]
    return pd.DataFrame(rows, columns=["t_s", "value"])


def has(scrapes: list[dict[str, Any]], name: str) -> bool:
    return bool(scrapes) and any(x["name"] == name for x in scrapes[-1]["samples"])


def counter_delta(scrapes: list[dict[str, Any]], name: str) -> float | None:
    """Increase of a counter (summed over labels) between the first and last scrape; None if absent."""
    if not has(scrapes, name):
        return None
    s = series(scrapes, name)
    return float(s["value"].iloc[-1] - s["value"].iloc[0])


def target(api_url: str) -> str:
    return redact.mask_url(metrics_url(api_url))
