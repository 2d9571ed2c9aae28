"""The one record writer: assemble, scrub, write, index.

Headless runs (:func:`smartops_nb.execution.flow.investigate`), ``smartops serve`` and the
JupyterLab "Save incident record" button (:func:`smartops_nb.kernel.interactive.save_record`) all
write a record through :func:`store`, so every record has the same metadata, the same scrubbing and
its entry in the archive's index.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Union

from . import archive as record_archive  # `archive` is the folder argument below
from . import record

if TYPE_CHECKING:
    import nbformat

    from .location import Archive

log = logging.getLogger("smartops.records")


def store(nb: "nbformat.NotebookNode", summary: dict[str, Any], archive: Union[Path, "Archive"], *,
          secrets: Iterable[str] = (), add_cell: bool = False) -> tuple[Union[Path, str], dict[str, Any]]:
    """Summary + executed notebook → scrubbed record in the archive; return its path (a folder) or
    URL (``s3://``) and the stored summary.

    ``add_cell``: the notebook did not show the summary itself (it did not reach ``run.finish()``),
    so it is appended as a last cell. Raises :class:`~smartops_nb.records.record.RecordWriteError`
    when the archive refuses it (the notebook is kept in a fallback folder, or for a shared archive
    in the local spool, which the error names).
    """
    record.attach_summary(nb, summary, add_cell=add_cell)
    nb = record.scrub_notebook(nb, list(secrets))
    path = record_archive.write_record(nb, summary, archive)  # the record and its index entry
    stored = nb.metadata["smartops"]  # its plans are registered with it (approvable from the alert)
    return path, stored
