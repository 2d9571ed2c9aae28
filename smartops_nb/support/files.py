"""Writing files so that a crash, a full disk or a second process never leaves a half-written one.

* :func:`write_synced`: write, flush and fsync an open file (the data is on disk when it returns);
* :func:`replace_atomically`: write a sibling temporary file, then ``os.replace`` it over the
  target, so readers see the old content or the new, never part of it; the temporary file is
  removed when writing fails (ENOSPC);
* :func:`locked`: an exclusive advisory ``flock`` on a lock file for the ``with`` block (released
  when the block ends or the process dies).
"""
from __future__ import annotations

import fcntl
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


def write_synced(f: IO, data: bytes | str) -> None:
    """Write ``data`` to ``f`` and make it durable (flush Python's buffer, then fsync)."""
    f.write(data)
    f.flush()
    os.fsync(f.fileno())


def replace_atomically(target: str | os.PathLike, data: bytes | str, *, sync: bool = False,
                       mode: int | None = None) -> Path:
    """Put ``data`` at ``target`` whole: a hidden temporary file beside it, renamed over it.

    ``sync`` fsyncs the data before the rename (a crash then leaves the old or the new file,
    never an empty one); ``mode`` sets the file's permissions. Raises the ``OSError`` of a failed
    write, with no temporary file left behind."""
    target = Path(target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w",
                       **({} if isinstance(data, bytes) else {"encoding": "utf-8"})) as f:
            if sync:
                write_synced(f, data)
            else:
                f.write(data)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return target


@contextmanager
def locked(lock_file: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_file`` (created if absent) for the ``with`` block."""
    with open(lock_file, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
