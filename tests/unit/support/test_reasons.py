"""support.reasons.one_line / flat: a failure said in one line, the same way everywhere."""
from __future__ import annotations

import pytest

from smartops_nb.support.reasons import clip, flat, one_line

PSYCOPG = ('connection failed: connection to server at "127.0.0.1", port 1 failed: Connection refused\n'
           "\tIs the server running on that host and accepting TCP/IP connections?")


@pytest.mark.parametrize("error,kwargs,said", [
    (TimeoutError("timed out"), {}, "TimeoutError: timed out"),
    (TimeoutError("timed out"), {"typed": False}, "timed out"),
    (OSError(PSYCOPG), {"typed": False},
     'connection failed: connection to server at "127.0.0.1", port 1 failed: Connection refused'),
    (ValueError("\n\n  first   real\tline \nsecond"), {}, "ValueError: first real line"),
    (ConnectionError(), {}, "ConnectionError"),
    (ConnectionError(""), {"typed": False}, "ConnectionError"),
    (RuntimeError("  "), {"default": "kernel died"}, "RuntimeError: kernel died"),
    (ValueError("x" * 50), {"limit": 20}, "ValueError: xxxxx..."),
    ("a reason given as text", {}, "str: a reason given as text"),
])
def test_one_line(error, kwargs, said):
    assert one_line(error, **kwargs) == said


def test_flat_and_clip():
    assert flat("HTTP 500:\n  internal\terror ") == "HTTP 500: internal error"
    assert flat({"a": 1}) == "{'a': 1}"
    assert clip("abcdef", 5) == "ab..." and clip("abc", 5) == "abc" and clip("abc", None) == "abc"
