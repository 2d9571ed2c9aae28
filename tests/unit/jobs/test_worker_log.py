"""What a worker's log keeps when the queue's PostgreSQL goes away: one line of its own, not the
tracebacks Procrastinate and asyncio print for every listener, heartbeat and job in flight."""
from __future__ import annotations

import logging

from procrastinate.exceptions import ConnectorException

from smartops_nb.jobs.worker import _QuietSweeps


def _record(name: str, exc: BaseException | None, message: str = "Task exception was never retrieved"):
    info = (type(exc), exc, None) if exc else None
    return logging.LogRecord(name, logging.ERROR, __file__, 1, message, None, info)


def test_the_lost_queues_tracebacks_are_dropped():
    quiet = _QuietSweeps()
    assert not quiet.filter(_record("asyncio", ConnectorException("Database error.")))  # a job's end not saved
    assert not quiet.filter(_record("procrastinate.worker", ConnectorException("Database error.")))


def test_every_other_error_is_kept():
    quiet = _QuietSweeps()
    assert quiet.filter(_record("asyncio", RuntimeError("a real bug")))
    assert quiet.filter(_record("smartops.worker", ConnectorException("x"), "queue connection lost"))
    assert quiet.filter(_record("procrastinate.worker", ValueError("bad job")))
