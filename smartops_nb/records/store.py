"""The one record writer: assemble, scrub, write, index.

Headless runs (:func:`smartops_nb.execution.flow.investigate`), ``smartops serve`` and the
JupyterLab "Save incident record" button (:func:`smartops_nb.kernel.interactive.save_record`) all
write a record through :func:`store`, so every record has the same metadata, the same scrubbing and
its entry in the archive's index.
"""
from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from . import archive as record_archive  # `archive` is the folder argument below
from . import plans, record

if TYPE_CHECKING:
    import nbformat

log = logging.getLogger("smartops.records")


def store(nb: "nbformat.NotebookNode", summary: dict[str, Any], archive: Path, *, secrets: Iterable[str] = (),
          add_cell: bool = False) -> tuple[Path, dict[str, Any]]:
    """Summary + executed notebook → scrubbed record in the archive; return its path and stored summary.

    ``add_cell``: the notebook did not show the summary itself (it did not reach ``run.finish()``),
    so it is appended as a last cell. Raises :class:`~smartops_nb.records.record.RecordWriteError`
    when the archive refuses it (the notebook is kept in a fallback folder the error names).
    """
    record.attach_summary(nb, summary, add_cell=add_cell)
    nb = record.scrub_notebook(nb, list(secrets))
    path = record_archive.write_record(nb, summary, archive)  # the record and its index entry
    stored = nb.metadata["smartops"]
    if stored.get("plans"):  # what a person may approve from the alert (smartops approve PLAN_ID)
        try:
            plans.PlanStore(archive).register(stored, path.name)
        except (OSError, sqlite3.Error) as e:  # the record is written; only approving from it is lost
            log.error("plans of %s not registered (%s): they cannot be approved; re-run the runbook", path.name, e)
    return path, stored
