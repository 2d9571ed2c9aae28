"""What every request to ``smartops serve`` passes before any route, and what every answer carries.

- **Host**: a request must name this server — the listen address, a loopback name when it listens on
  loopback, the machine's names when on another address, or ``--public-url``'s host — else 421
  (DNS rebinding: a page of ``attacker.example`` resolved to 127.0.0.1 gets nothing). Listening on a
  wildcard address (``0.0.0.0``, ``::``, token required) any Host is taken: services reach it by names
  it cannot know, and without the token a rebound page gets only ``/healthz``.
- **Origin / Sec-Fetch-Site** on every state-changing request (POST, PUT, PATCH, DELETE): a browser's
  request from another origin (another port of the same host included) is refused with 403, whatever
  its cookies or form fields. Requests without these headers (curl, Alertmanager) pass on to their
  other checks (token, CSRF token, Content-Type).
- **Headers**: every answer gets ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy:
  same-origin`` (no address of ours leaves for another site; our own forms keep their ``Origin``);
  every one without its own Content-Security-Policy gets :data:`PAGE_CSP` (HTML) or
  :data:`TEXT_CSP` (anything else: nothing in it may run or load).
- :func:`bearer`: the token of an ``Authorization`` header, its scheme matched case-insensitively
  (RFC 9110 §11.1: Alertmanager's ``type: bearer`` sends ``bearer``).
"""
from __future__ import annotations

import ipaddress
import json
import socket
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit

#: The pages: inline styles, images from here, the record frame from here; no script at all.
PAGE_CSP = ("default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; frame-src 'self'; "
            "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
#: Anything else (JSON, Markdown, a download): nothing runs or loads if a browser renders it.
TEXT_CSP = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; sandbox"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
WILDCARDS = frozenset({"", "0.0.0.0", "::", "[::]"})


def bearer(headers: Mapping[str, str]) -> str | None:
    """The credentials of ``Authorization: Bearer …`` (any case of the scheme), else None."""
    scheme, _, value = (headers.get("authorization") or "").strip().partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def host_name(host_header: str) -> str | None:
    """The host of a ``Host`` header (lowercase, no port, IPv6 without brackets), None if malformed."""
    try:
        parts = urlsplit(f"//{host_header}")
        parts.port  # noqa: B018 - raises on a bad port
        name = parts.hostname
    except ValueError:
        return None
    if not name or any(c in name for c in "/\\@ ") or parts.username is not None or parts.path:
        return None
    return name.rstrip(".")


class Site:
    """Who this server is: the host names it answers to and the origins whose pages may post to it."""

    def __init__(self, listen_host: str, public_url: str = ""):
        self.public_origin = ""
        names: set[str] = set()
        if public_url:
            parts = urlsplit(public_url)
            if parts.hostname:
                names.add(parts.hostname.lower())
                self.public_origin = f"{parts.scheme}://{parts.netloc}".lower()
        listen = listen_host.strip("[]").lower()
        self.any_host = listen_host in WILDCARDS
        ip = _ip(listen)
        names.add(str(ip) if ip else listen)
        if listen == "localhost" or (ip is not None and ip.is_loopback):
            names |= {"localhost", "127.0.0.1", "::1"}
        else:
            names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
        self.names = frozenset(n for n in names if n)

    def host_ok(self, name: str) -> bool:
        if self.any_host or name in self.names:
            return True
        ip = _ip(name)
        if ip is not None:  # any loopback address when we listen on loopback
            return ip.is_loopback and "127.0.0.1" in self.names
        return name.endswith(".localhost") and "localhost" in self.names  # RFC 6761: always loopback

    def origin_ok(self, origin: str, scheme: str, host_header: str) -> bool:
        """A browser's ``Origin`` is this server's own (the address it was reached at, or the public URL)."""
        origin = origin.lower().rstrip("/")
        return origin in (f"{scheme}://{host_header}".lower(), self.public_origin) and origin != ""


class Guard:
    """ASGI middleware: the Host and Origin checks, then the security headers on every answer."""

    def __init__(self, app, site: Site):
        self.app, self.site = app, site

    def refuse(self, scope: Mapping[str, Any], headers: Mapping[str, str]) -> tuple[int, str] | None:
        name = host_name(headers.get("host", ""))
        if name is None:
            return 400, "missing or malformed Host header"
        if not self.site.host_ok(name):
            return 421, f"this server does not answer to the host {name!r}"
        if scope.get("method") not in UNSAFE_METHODS:
            return None
        fetch_site = headers.get("sec-fetch-site", "").lower()
        if fetch_site in ("cross-site", "same-site"):
            return 403, f"refused: a {fetch_site} request from another page (Sec-Fetch-Site)"
        origin = headers.get("origin")
        if origin == "null" and fetch_site == "same-origin":
            return None  # a form of ours under a no-referrer policy: the browser hides the origin, not the site
        if origin is not None and not self.site.origin_ok(origin, scope.get("scheme", "http"), headers["host"]):
            return 403, "refused: a request from another origin (Origin)"
        return None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refused = self.refuse(scope, headers)

        async def send_secured(message):
            if message["type"] == "http.response.start":
                out = [(k, v) for k, v in message.get("headers", [])]
                have = {k.lower() for k, _ in out}
                ctype = dict((k.lower(), v) for k, v in out).get(b"content-type", b"")
                csp = PAGE_CSP if ctype.startswith(b"text/html") else TEXT_CSP
                extra = {b"x-content-type-options": b"nosniff", b"referrer-policy": b"same-origin",
                         b"content-security-policy": csp.encode()}
                out += [(k, v) for k, v in extra.items() if k not in have]
                message = {**message, "headers": out}
            await send(message)

        if refused is not None:
            status, why = refused
            body = json.dumps({"error": why}).encode()
            await send_secured({"type": "http.response.start", "status": status, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send_secured)


def middleware(listen_host: str, public_url: str = "") -> list:
    """The Starlette middleware list that puts :class:`Guard` in front of an app."""
    from starlette.middleware import Middleware

    return [Middleware(Guard, site=Site(listen_host, public_url))]


def trusted_proxies(addresses: Iterable[str]) -> list[str]:
    """``--trusted-proxy`` values checked (IP addresses or networks): a bad one is a ParameterError."""
    from smartops_nb.contract import ParameterError

    out = []
    for a in addresses:
        for part in (p.strip() for p in str(a).split(",")):
            if not part:
                continue
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise ParameterError(f"--trusted-proxy: not an IP address or network: {part!r}") from None
            out.append(part)
    return out
