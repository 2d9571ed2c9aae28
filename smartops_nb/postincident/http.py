"""One HTTP call to an outside service, bounded: a timeout per attempt, retries with backoff on 429 and
5xx (``Retry-After`` honoured, in seconds or as an HTTP date) and on connection errors, and a total
time after which it gives up. A failure is a :class:`CallFailed` whose text has every secret masked."""
from __future__ import annotations

import email.utils
import functools
import ssl
import time
from typing import Any, Callable

import httpx

from smartops_nb import redact
from smartops_nb.support.reasons import one_line

BACKOFF_S = 0.5
BACKOFF_MAX_S = 8.0
RETRIED = {429, 500, 502, 503, 504}


class CallFailed(Exception):
    """The service refused or never answered; the message is one masked line."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(redact.scrub(message))
        self.status = status


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every call: loading the CA bundle costs ~0.2 s, once is enough."""
    return ssl.create_default_context()


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), else None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def call(method: str, url: str, *, timeout: float, total: float, json: Any = None, headers: dict[str, str] | None = None,
         auth: Any = None, sleep: Callable[[float], None] = time.sleep, transport: httpx.BaseTransport | None = None
         ) -> httpx.Response:
    """The 2xx response of ``method url``; :class:`CallFailed` once retries are spent or the time is up."""
    deadline = time.monotonic() + total
    attempt = 0
    with httpx.Client(timeout=timeout, transport=transport, follow_redirects=False, verify=_tls()) as client:
        while True:
            attempt += 1
            wait: float | None = None
            try:
                left = deadline - time.monotonic()
                resp = client.request(method, url, json=json, headers=headers, auth=auth,
                                      timeout=max(0.1, min(timeout, left)))
            except httpx.HTTPError as e:
                problem, status = one_line(e), None
            else:
                if resp.is_success:
                    return resp
                problem, status = f"HTTP {resp.status_code} {_reason(resp)}", resp.status_code
                if status not in RETRIED:
                    raise CallFailed(f"{method} {_where(url)}: {problem}", status)
                wait = retry_after(resp.headers.get("Retry-After"))
            wait = wait if wait is not None else min(BACKOFF_MAX_S, BACKOFF_S * 2 ** (attempt - 1))
            if time.monotonic() + wait >= deadline:
                raise CallFailed(f"{method} {_where(url)}: {problem} (gave up after {attempt} attempt"
                                 f"{'s' if attempt > 1 else ''}, {total:.0f} s allowed)", status)
            sleep(wait)


def _reason(resp: httpx.Response) -> str:
    """The status's phrase and the service's own short explanation, if it gave one."""
    text = resp.reason_phrase
    try:
        body = resp.json()
    except ValueError:
        return text
    if isinstance(body, dict):
        said = body.get("message") or body.get("error") or body.get("errorMessages")
        if said:
            text += f": {' '.join(map(str, said)) if isinstance(said, list) else said}"
    return text[:300]


def _where(url: str) -> str:
    """The URL without its query (a webhook's token may sit there) and with secrets masked."""
    return redact.scrub(url.split("?", 1)[0])
