"""Probe HTTP endpoints (the API's ``/health``): status, latency, body or the reason it failed.

Never raises for an unreachable or failing endpoint: a refused connection, a timeout or a 503 is
evidence, returned as data for the checks to judge. Every request has a timeout.
"""
from __future__ import annotations

import time
import urllib.error
import urllib.request
from typing import Any

from smartops_nb import redact
from smartops_nb.support.reasons import one_line

HEALTH_PATH = "/health"
BODY_LIMIT = 2000  # characters of the body kept as evidence


def get(url: str, timeout: float = 5.0) -> dict[str, Any]:
    """GET ``url``: ``{url, status, ok, latency_ms, body, error}`` (status None when no answer)."""
    out: dict[str, Any] = {"url": redact.mask_url(url), "status": None, "ok": False,
                           "latency_ms": None, "body": "", "error": ""}
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="GET"), timeout=timeout) as r:
            out["status"], raw = r.status, r.read(BODY_LIMIT * 4)
    except urllib.error.HTTPError as e:  # an answer all the same (4xx/5xx): keep status and body
        out["status"] = e.code
        try:
            raw = e.read(BODY_LIMIT * 4)
        except Exception:
            raw = b""
    except Exception as e:  # refused, timed out, DNS, TLS: no answer
        out["latency_ms"] = round((time.monotonic() - t0) * 1000, 1)
        reason = getattr(e, "reason", None) or e
        out["error"] = redact.scrub(one_line(reason))
        return out
    out["latency_ms"] = round((time.monotonic() - t0) * 1000, 1)
    out["body"] = redact.scrub(raw.decode("utf-8", "replace")[:BODY_LIMIT])
    out["ok"] = out["status"] == 200
    return out


def health(url: str, timeout: float = 5.0) -> dict[str, Any]:
    """The API's health check: GET ``url`` + ``/health`` (``url`` is the API's base, e.g.
    ``api_url``; a URL already ending in ``/health`` is used as it is)."""
    target = url if url.rstrip("/").endswith(HEALTH_PATH) else url.rstrip("/") + HEALTH_PATH
    return get(target, timeout)
