"""How ``smartops`` logs, set once for every command: text lines that cannot be forged, or JSON.

Logged values come from outside (an alert's fingerprint and labels, a client's address, a system's
error text). In text, every control character of a message — newline, carriage return, ANSI escape,
any other C0 or C1, and the Unicode line separators — is written as an escape (``\\n``, ``\\x1b``), so
a value can never start a line of its own. ``--log-format json`` writes one JSON object per line
(``time``, ``level``, ``logger``, ``message`` and any ``extra=`` fields) for log shippers; JSON escapes
control characters itself.
"""
from __future__ import annotations

import logging
import sys

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}
_ESCAPES.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", 0x2028: "\\u2028", 0x2029: "\\u2029"})


def escape(text: str) -> str:
    """Control characters written as escapes (one pass, linear)."""
    return text.translate(_ESCAPES)


class EscapingFormatter(logging.Formatter):
    """The usual one-line format, with the message's control characters escaped. A traceback keeps its
    lines, but the messages of the exceptions in it are escaped too."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        clean = escape(message)
        if clean != message:  # a copy: other handlers see the record as logged
            record = logging.makeLogRecord({**record.__dict__, "msg": clean, "args": None})
        return super().format(record)

    def formatException(self, ei) -> str:
        text = super().formatException(ei)
        seen, exc = set(), ei[1]
        while exc is not None and id(exc) not in seen:
            seen.add(id(exc))
            message = str(exc)
            if message and escape(message) != message:
                text = text.replace(message, escape(message))
            exc = exc.__cause__ or exc.__context__
        return text


def json_formatter() -> logging.Formatter:
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter("{levelname}{name}{message}", style="{", timestamp="time",  # ISO 8601, UTC
                         rename_fields={"levelname": "level", "name": "logger"})


def configure(fmt: str = "text", *, verbose: bool = False) -> None:
    """Log to stderr in ``fmt`` (``text`` or ``json``); the root logger's level INFO, DEBUG when ``verbose``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(json_formatter() if fmt == "json" else EscapingFormatter(TEXT_FORMAT))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
