"""Keep secrets out of incident records.

Secrets are masked where they enter (URLs with credentials, environment variables whose names
say they are secret, values that an ``env:NAME`` reference resolved to) and :func:`scrub` removes
any registered secret from text before it is written anywhere.
"""
from __future__ import annotations

import os
import re
import threading
from typing import Any, Mapping
from urllib.parse import urlsplit

from .contract import ParameterError

MASK = "******"
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|KEY|CREDENTIAL|PRIVATE", re.I)
# Every pattern here runs on text of any length (a record's outputs, an alert's labels), so none may
# backtrack: each quantifier is possessive (``*+``, ``++``) where the greedy match is the only one that can
# succeed anyway, and a match may only begin where a run of its leading characters begins (the
# ``(?<!...)`` guard plus a ``lead`` group): a failed attempt is not retried at every later position of
# the same run, which made the scan quadratic on a long run (40k characters took 12 s). The groups mask
# exactly what the plain greedy patterns masked (tests/unit/test_redact.py compares the two).

# user:password@ in any URL-like string (postgresql://, redis://, http://). A scheme starts at the first
# letter of a run of scheme characters; every later letter of the run would end at the same "://".
_URL_CREDENTIALS = re.compile(
    r"(?<![a-z0-9+.-])(?P<lead>[0-9+.-]*+)(?P<scheme>[a-z][a-z0-9+.-]*+://)(?P<user>[^:/@\s]*+):"
    r"(?P<pw>[^@\s/]++)@", re.I)
# key=value password in libpq keyword DSNs (the literal first: the engine skips to its candidates)
_KW_PASSWORD = re.compile(r"(?P<k>password(?<=\bpassword)\s*+=\s*+)(?P<v>'[^']*+'|[^\s\"\\]++)", re.I)
# secrets a log line prints: password=..., token: ..., api_key=..., DB_PASSWORD=..., Authorization:
# Bearer .... The value stops at a quote, backslash, comma, semicolon or ampersand, so that scrubbing a
# notebook's JSON text never eats the JSON around it. The key is a whole run of [\w.-] (from its first
# word character) that ends in one of the words: the run is read once, then looked back on.
_LOG_SECRET = re.compile(
    r"(?<![\w.-])(?P<lead>[.-]*+)(?P<k>(?=\w)[\w.-]*+(?<=[dntlsy])"  # every word's last letter: one cheap test
    r"(?:(?<=password)|(?<=passwd)|(?<=pwd)|(?<=token)|(?<=secret)|(?<=apikey)|(?<=api[_-]key)"
    r"|(?<=accesskey)|(?<=access[_-]key)|(?<=credential)|(?<=credentials))"
    r"\s*+[=:]\s*+)(?P<v>'[^'\\\n]*+'|[^\s\"'\\,;&]++)", re.I)
_AUTH_HEADER = re.compile(r"(?P<k>\b(?:Bearer|Basic|Token)\s++)(?P<v>[A-Za-z0-9._~+/=-]{8,}+)")

#: Configuration holds *references* to secrets: ``env:NAME`` is resolved at use, inside the kernel.
ENV_PREFIX = "env:"

_secrets: set[str] = set()
_lock = threading.Lock()


def resolve_env(value: Any, *, name: str = "") -> Any:
    """Resolve ``env:NAME`` to the environment variable NAME (inside the kernel, never earlier)."""
    if isinstance(value, str) and value.startswith(ENV_PREFIX):
        var = value[len(ENV_PREFIX):]
        if var not in os.environ:
            raise ParameterError(f"parameter {name or '?'!r} refers to environment variable {var} which is not set")
        return os.environ[var]
    return value


def register_secret(value: Any) -> None:
    """Remember a secret value so that :func:`scrub` removes it wherever it appears."""
    if isinstance(value, str) and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def registered() -> frozenset[str]:
    with _lock:
        return frozenset(_secrets)


def mask_url(url: str) -> str:
    """``postgresql://u:pw@h/db`` → ``postgresql://u:******@h/db`` (also masks ``password=`` DSNs)."""
    if not isinstance(url, str):
        return url
    out = url
    if "://" in url:  # (a plain substring search first: most text has no URL at all)
        out = _URL_CREDENTIALS.sub(lambda m: f"{m['lead']}{m['scheme']}{m['user']}:{MASK}@", url)
    return _KW_PASSWORD.sub(lambda m: f"{m['k']}{MASK}", out)


def mask_log_secrets(text: str) -> str:
    """``token=abc``, ``password: abc``, ``Authorization: Bearer abc`` → the value masked."""
    if not isinstance(text, str):
        return text
    if "Bearer" in text or "Basic" in text or "Token" in text:
        text = _AUTH_HEADER.sub(lambda m: f"{m['k']}{MASK}", text)
    return _LOG_SECRET.sub(lambda m: m["lead"] + m["k"] + (m["v"] if m["v"].strip("'") in ("", MASK) else MASK),
                           text)


def url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def mask_env(env: Mapping[str, str]) -> dict[str, str]:
    """Mask values of variables whose names say they are secret, and credentials inside URLs."""
    out = {}
    for k, v in env.items():
        if SECRET_NAME.search(k):
            register_secret(v)
            out[k] = MASK
        else:
            out[k] = mask_url(v)
    return out


def scrub(text: str) -> str:
    """Remove every registered secret, URL credential and ``token=``-like value from a piece of text."""
    if not isinstance(text, str) or not text:
        return text
    for s in sorted(registered(), key=len, reverse=True):
        if s in text:
            text = text.replace(s, MASK)
    return mask_log_secrets(mask_url(text))


def scrub_obj(obj: Any) -> Any:
    """Apply :func:`scrub` to every string in a JSON-like structure."""
    if isinstance(obj, str):
        return scrub(obj)
    if isinstance(obj, list):
        return [scrub_obj(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(scrub_obj(v) for v in obj)
    if isinstance(obj, dict):
        return {k: scrub_obj(v) for k, v in obj.items()}
    return obj


def safe_dsn(dsn: str) -> str:
    """A DSN fit for display: credentials masked, nothing else changed."""
    return mask_url(dsn)


def secrets_in(values: Mapping[str, Any]) -> list[str]:
    """The secrets a set of parameters carries: passwords inside URLs, and whatever an ``env:NAME``
    reference resolves to (and the password inside that). Found again wherever needed, never stored."""
    out: list[str | None] = []
    for v in values.values():
        if not isinstance(v, str):
            continue
        if v.startswith(ENV_PREFIX):
            v = os.environ.get(v[len(ENV_PREFIX):], "")
            out.append(v)
        out.append(url_password(v) if "://" in v else None)
    return [s for s in out if s]
