"""Bounded waiting: poll something until it is done or the time is up (never forever)."""
from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def until(fetch: Callable[[], T], timeout: float = 30.0, interval: float = 0.5, *,
          done: Callable[[T], object] = bool) -> T:
    """Call ``fetch()`` until ``done(value)`` is true or ``timeout`` seconds pass; return the last value."""
    deadline = time.monotonic() + timeout
    value = fetch()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(interval)
        value = fetch()
    return value
