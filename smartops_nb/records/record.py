"""The incident record: the executed notebook with its summary in ``metadata["smartops"]``.

Who names a record, scrubs it of secrets and writes it into the archive folder. Writes are
atomic (fsynced temporary file, then a hard link to the record name) and never overwrite: two runs
in the same second get distinct names. A record the archive refuses (ENOSPC, read-only) is kept in
a fallback folder that :class:`RecordWriteError` names. The one writer is
:meth:`smartops_nb.records.archive.Archive.write`: it calls :func:`stage` and :func:`publish` here and adds
the record's entry to the index beside the records.
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # nbformat costs ~1 s to import: only the writers need it
    import nbformat


from smartops_nb import redact
from smartops_nb.contract import FALLBACK_ENV
from smartops_nb.params import parse_time
from smartops_nb.support.files import write_synced

from . import render


class RecordWriteError(OSError):
    """The record could not be written; ``fallback`` names where the notebook was kept instead."""

    def __init__(self, message: str, fallback: Path | None):
        super().__init__(message)
        self.fallback = fallback


#: The longest part of a record's name made from a value (runbook, environment): file names stop at 255
#: bytes, and a label value can be far longer (a 300-character ``env`` gave "File name too long", no record).
MAX_SLUG = 64


def slug(text: str, limit: int = MAX_SLUG) -> str:
    """``prod/eu 1`` → ``prod-eu-1``; past ``limit`` characters, cut and ended by a hash of the whole value
    (two long values that share a beginning still name different records)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-") or "unknown"
    if len(slug) <= limit:
        return slug
    digest = hashlib.sha256(str(text).encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{slug[:limit - 9].rstrip('-')}-{digest}"


def record_name(summary: dict[str, Any], n: int = 0) -> str:
    """``2026-11-26T14-03-12Z_db-pool-exhausted_demo.ipynb`` (``_2``, ``_3``... on collision)."""
    started = parse_time(summary["started_at"], name="started_at")
    stem = f"{started.strftime('%Y-%m-%dT%H-%M-%SZ')}_{slug(summary['runbook'])}_{slug(summary['environment'])}"
    return f"{stem}{'' if n == 0 else f'_{n + 1}'}.ipynb"


#: Output payloads that are a binary file in base64 (the charts). Not text a secret can be read from
#: (a chart that drew one would not show it in its base64 either), and scrubbing them was most of the
#: scrub's time: the URL-credential pattern is slow on a long alphanumeric run (~0.05 s per record).
BINARY_MIME = frozenset({"image/png", "image/jpeg", "image/gif"})


def scrub_notebook(nb: "nbformat.NotebookNode", extra_secrets: list[str] = ()) -> "nbformat.NotebookNode":
    """Remove every known secret from sources, outputs and metadata (parameters included); the charts'
    base64 payloads (:data:`BINARY_MIME`) are kept as they are."""
    for s in extra_secrets:
        redact.register_secret(s)
    import nbformat

    # on the objects, not on JSON text: json.dumps escapes quotes, backslashes and non-ASCII, and a
    # secret containing any of them would no longer match in the escaped text
    clean = redact.scrub_obj({k: v for k, v in nb.items() if k != "cells"})
    clean["cells"] = [_scrub_cell(c) for c in nb.get("cells", [])]
    return nbformat.from_dict(clean)


def _scrub_cell(cell: dict[str, Any]) -> dict[str, Any]:
    clean = redact.scrub_obj({k: v for k, v in cell.items() if k != "outputs"})
    if "outputs" in cell:
        clean["outputs"] = [_scrub_output(o) for o in cell["outputs"]]
    return clean


def _scrub_output(output: Any) -> Any:
    data = output.get("data") if isinstance(output, dict) else None
    if not isinstance(data, dict):
        return redact.scrub_obj(output)
    clean = redact.scrub_obj({k: v for k, v in output.items() if k != "data"})
    clean["data"] = {k: v if k in BINARY_MIME and isinstance(v, str) else redact.scrub_obj(v) for k, v in data.items()}
    return clean


def attach_summary(nb: "nbformat.NotebookNode", summary: dict[str, Any], *, add_cell: bool) -> None:
    """Put the summary into the notebook metadata and, when the run did not show it, as a last cell."""
    nb.metadata["smartops"] = summary
    if add_cell:
        import nbformat

        cell = nbformat.v4.new_markdown_cell(
            "## Incident record summary (written by the runner: the notebook did not reach its last cell)\n\n"
            + render.summary_html(summary))
        nb.cells.append(cell)


def stage(data: bytes, archive: Path, summary: dict[str, Any]) -> Path:
    """Write ``data`` to a hidden temporary file in ``archive`` and fsync it.

    On failure (ENOSPC, a read-only folder) nothing is left in the archive, the notebook is kept
    in a fallback folder and :class:`RecordWriteError` names it.
    """
    tmp: Path | None = None
    try:
        archive.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=archive, prefix=".record-", suffix=".tmp")
        tmp = Path(name)
        with os.fdopen(fd, "wb") as f:
            write_synced(f, data)
        os.chmod(tmp, 0o644)
        return tmp
    except OSError as e:
        _discard(tmp)
        raise unsaved(data, summary, archive, e) from e


def publish(tmp: Path, archive: Path, summary: dict[str, Any]) -> Path:
    """Give a staged file its record name without ever replacing a record; return the path.

    A hard link fails if the name exists, so two writers in the same second get ``_2``, ``_3``...;
    the record appears complete or not at all. Where hard links are unsupported, the name is
    reserved with O_EXCL and the staged file renamed over the (empty) reservation.
    """
    try:
        for n in range(1000):
            target = archive / record_name(summary, n)
            try:
                try:
                    os.link(tmp, target)
                except FileExistsError:
                    continue
                except OSError as e:
                    if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                        raise
                    os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
                    os.replace(tmp, target)
            except FileExistsError:
                continue
            _discard(tmp)
            _fsync_dir(archive)
            return target
    except OSError as e:
        data = tmp.read_bytes() if tmp.exists() else b""
        _discard(tmp)
        raise unsaved(data, summary, archive, e) from e
    _discard(tmp)
    raise RecordWriteError(f"no free record name in {archive}", None)


def fallback_dirs() -> list[Path]:
    """Where an unwritable record goes: $SMARTOPS_FALLBACK_DIR, ~/.smartops/unsaved, the temp dir."""
    dirs = [Path(os.environ[FALLBACK_ENV])] if os.environ.get(FALLBACK_ENV) else []
    return dirs + [Path.home() / ".smartops" / "unsaved", Path(tempfile.gettempdir()) / "smartops-unsaved"]


def keep_unsaved(data: bytes, summary: dict[str, Any]) -> Path | None:
    """Save the notebook that the archive refused in the first fallback folder that takes it."""
    for folder in fallback_dirs():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(1000):
                target = folder / record_name(summary, n)
                try:
                    with open(target, "xb") as f:
                        write_synced(f, data)
                    return target
                except FileExistsError:
                    continue
        except OSError:
            continue
    return None


def unsaved(data: bytes, summary: dict[str, Any], archive: Path, error: OSError) -> RecordWriteError:
    fallback = keep_unsaved(data, summary) if data else None
    reason = error.strerror or str(error)
    kept = f"notebook kept at {fallback}" if fallback else "the notebook could not be kept anywhere"
    return RecordWriteError(f"cannot write to {archive}: {reason}; {kept}", fallback)


def _discard(path: Path | None) -> None:
    if path is not None:
        try:
            path.unlink()
        except OSError:
            pass


def _fsync_dir(folder: Path) -> None:
    """Make the new directory entry durable (a rename is not, until its folder is synced)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
