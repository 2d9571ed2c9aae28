"""The local spool of a shared archive: records finished but not yet uploaded and indexed.

A record for a shared archive (``s3://``, or a PostgreSQL index) is written here first, fsynced, then
uploaded and indexed by :meth:`smartops_nb.records.archive.Archive.sync`, which empties the spool in order
(oldest first). If the store or the index is down, the record stays here and the next successful
write, or ``smartops archive sync``, sends it: no record is ever only in memory.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from smartops_nb.support.files import locked, replace_atomically


def folder(local_dir: Path) -> Path:
    return Path(local_dir) / "spool"


def put(local_dir: Path, data: bytes, name: str) -> Path:
    """Keep ``data`` durably as the newest spool entry (``<time_ns>-<name>``); its path."""
    spool = folder(local_dir)
    spool.mkdir(parents=True, exist_ok=True)
    return replace_atomically(spool / f"{time.time_ns():020d}-{name}", data, sync=True)


def entries(local_dir: Path) -> list[Path]:
    """Spooled records, oldest first."""
    spool = folder(local_dir)
    return sorted(spool.glob("*.ipynb")) if spool.is_dir() else []


@contextmanager
def draining(local_dir: Path) -> Iterator[None]:
    """One sender at a time per spool (threads of ``serve`` and other commands on this machine)."""
    spool = folder(local_dir)
    spool.mkdir(parents=True, exist_ok=True)
    with locked(spool / ".lock"):
        yield
