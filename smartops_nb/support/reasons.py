"""An exception or a message as one line: what a finding, a log line, a CLI error or a record says.

One definition, so that every place that reports a failure shortens it the same way: the first
non-blank line of the message (a psycopg or subprocess error continues with hints and context),
whitespace collapsed, the exception's type in front unless the caller's sentence already names
the failure; an exception with no message is its type's name.
"""
from __future__ import annotations


def one_line(e: object, *, typed: bool = True, default: str = "", limit: int | None = None) -> str:
    """``"TimeoutError: timed out"`` (``typed``) or ``"timed out"``. When ``e`` says nothing: ``default``
    in place of its message, or else the type's name alone."""
    first = next((line for line in (" ".join(part.split()) for part in str(e).splitlines()) if line), default)
    name = type(e).__name__
    text = (f"{name}: {first}" if typed else first) if first else name
    return clip(text, limit)


def flat(text: object, limit: int | None = None) -> str:
    """Any text (an API's error message, a probe's output) on one line: every whitespace run one space."""
    return clip(" ".join(str(text).split()), limit)


def clip(text: str, limit: int | None) -> str:
    """``text`` cut to ``limit`` characters, the cut marked with ``...``."""
    return text if limit is None or len(text) <= limit else text[: max(limit - 3, 0)] + "..."
