"""The incident record: the executed notebook with its summary in ``metadata["smartops"]``.

Who names a record, scrubs it of secrets and writes it into the archive folder. Writes are
atomic (temporary name, then rename) and never overwrite: two runs in the same second get
distinct names.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import nbformat

from . import display, redact
from .params import iso, parse_time

ARCHIVE_ENV = "SMARTOPS_ARCHIVE"
DEFAULT_ARCHIVE = "incidents"


class RecordWriteError(OSError):
    """The record could not be written; ``fallback`` names where the notebook was kept instead."""

    def __init__(self, message: str, fallback: Path | None):
        super().__init__(message)
        self.fallback = fallback


def archive_dir(explicit: str | os.PathLike | None = None) -> Path:
    return Path(explicit or os.environ.get(ARCHIVE_ENV) or DEFAULT_ARCHIVE)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-") or "unknown"


def record_name(summary: dict[str, Any], n: int = 0) -> str:
    """``2026-11-26T14-03-12Z_db-pool-exhausted_demo.ipynb`` (``_2``, ``_3``... on collision)."""
    started = parse_time(summary["started_at"], name="started_at")
    stem = f"{started.strftime('%Y-%m-%dT%H-%M-%SZ')}_{_slug(summary['runbook'])}_{_slug(summary['environment'])}"
    return f"{stem}{'' if n == 0 else f'_{n + 1}'}.ipynb"


def scrub_notebook(nb: nbformat.NotebookNode, extra_secrets: list[str] = ()) -> nbformat.NotebookNode:
    """Remove every known secret from sources, outputs and metadata (parameters included)."""
    for s in extra_secrets:
        redact.register_secret(s)
    text = redact.scrub(json.dumps(nb))
    return nbformat.from_dict(json.loads(text))


def attach_summary(nb: nbformat.NotebookNode, summary: dict[str, Any], *, add_cell: bool) -> None:
    """Put the summary into the notebook metadata and, when the run did not show it, as a last cell."""
    nb.metadata["smartops"] = summary
    if add_cell:
        cell = nbformat.v4.new_markdown_cell(
            "## Incident record summary (written by the runner: the notebook did not reach its last cell)\n\n"
            + display.summary_html(summary))
        nb.cells.append(cell)


def write_record(nb: nbformat.NotebookNode, summary: dict[str, Any], archive: Path) -> Path:
    """Atomically write ``nb`` into ``archive`` under a fresh, time-sorted name and return it."""
    archive.mkdir(parents=True, exist_ok=True)
    data = nbformat.writes(nb).encode()
    for n in range(1000):
        target = archive / record_name(summary, n)
        try:
            fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)  # reserve the name
        except FileExistsError:
            continue
        os.close(fd)
        tmp = archive / f".{target.name}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            for leftover in (tmp, target):
                try:
                    leftover.unlink()
                except OSError:
                    pass
            raise
        return target
    raise RecordWriteError(f"no free record name in {archive}", None)


def now_iso() -> str:
    from .params import utcnow

    return iso(utcnow())
