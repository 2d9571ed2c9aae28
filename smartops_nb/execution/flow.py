"""Investigate: the flow from a prepared run to a stored, announced incident record.

``investigate()`` = execute (papermill, :mod:`.runner`) → store (:mod:`smartops_nb.records.store`)
→ notify (:mod:`smartops_nb.alerts.notify`). ``smartops run`` and ``smartops serve`` call this one
flow; each step is a service that knows nothing of the others.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smartops_nb.alerts import notify
from smartops_nb.contract import EXIT_FAILED, EXIT_OK
from smartops_nb.records.store import store

from . import runner
from .prepare import Prepared

log = logging.getLogger("smartops.flow")


@dataclass
class Result:
    record: Path
    summary: dict[str, Any]
    notifications: list[dict[str, Any]] = field(default_factory=list)  # outcomes, see notify.py

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.summary.get("status") == "completed" else EXIT_FAILED


def investigate(prep: Prepared, archive: Path, *, progress: bool = True, cell_timeout: int = 600,
                start_timeout: int = 60, kernel=None) -> Result:
    """Run the runbook, write its record, then send its notifications; return the record.

    ``kernel``: a leased warm kernel (see :func:`runner.execute`). Raises
    :class:`~smartops_nb.records.record.RecordWriteError` only when the record cannot be written.
    """
    done = runner.execute(prep, progress=progress, cell_timeout=cell_timeout, start_timeout=start_timeout,
                          kernel=kernel)
    path, stored = store(done.nb, done.summary, archive, secrets=done.secrets, add_cell=not done.reached_end)
    log.info("record written: %s", path)
    result = Result(path, stored)
    # after the write: the message names the record, and a record is written once (see notify.py)
    result.notifications = notify.after_run(prep.config, result.summary, path, archive)
    return result
