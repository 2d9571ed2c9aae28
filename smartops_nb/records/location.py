"""Which archive: its records' storage and its index, from ``--archive`` and ``--index``.

``--archive`` ($SMARTOPS_ARCHIVE) is a folder (the default, ``./incidents``) or ``s3://bucket/prefix``;
``--index`` ($SMARTOPS_INDEX) is ``sqlite`` (``.index.sqlite`` beside a folder, the default) or a
PostgreSQL DSN, which an ``s3://`` archive requires. A folder with its SQLite index is *local*:
records are written straight into the folder. Any other pair is *shared*: a record is first kept
in a local spool (see :mod:`.spool`) and then uploaded and indexed, so a store that is down never
loses it.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from smartops_nb.contract import ARCHIVE_ENV, DEFAULT_ARCHIVE, INDEX_ENV, ParameterError, STATE_DIR_ENV

from .entries import Index
from .plans import PlanStore, PostgresPlanStore, SqlitePlanStore
from .storage import FolderStorage, Storage, open_storage

SQLITE = "sqlite"


@dataclass
class Archive:
    url: str                 # the folder's path or s3://bucket/prefix
    storage: Storage
    index: Index
    folder: Path | None = None              # a folder archive's folder
    local_dir: Path = field(default=None)   # type: ignore[assignment]  # notification log, spool, read-only copies

    @property
    def shared(self) -> bool:
        """Written through the spool (anything but a folder with its SQLite index)."""
        from .index_sqlite import SqliteIndex

        return not (isinstance(self.storage, FolderStorage) and isinstance(self.index, SqliteIndex))

    @property
    def target(self) -> "Path | Archive":
        """What to hand the writers: the folder itself for a local archive (as before), else this."""
        return self.folder if not self.shared else self

    def plan_store(self) -> PlanStore:
        """Where this archive's plans are decided: beside a folder with its SQLite index, else in
        the PostgreSQL index (every machine of the team approves from it)."""
        from .index_postgres import PostgresIndex

        if isinstance(self.index, PostgresIndex):
            return PostgresPlanStore(self.index)
        return SqlitePlanStore(self.folder)

    def __str__(self) -> str:
        return self.url


def state_dir() -> Path:
    """This machine's SmartOps state: $SMARTOPS_STATE_DIR or ~/.smartops."""
    return Path(os.environ.get(STATE_DIR_ENV) or Path.home() / ".smartops")


def open_archive(archive: "str | os.PathLike | Archive | None" = None, index: str | None = None,
                 *, busy_timeout: float | None = None) -> Archive:
    """The archive named by the arguments, else the environment. Raises :class:`ParameterError`
    (one line, exit 2) for a pair that cannot work: ``s3://`` without a PostgreSQL DSN, a bad DSN.

    A folder named here without an index is that folder with its SQLite index: ``$SMARTOPS_INDEX``
    belongs to the team archive of the environment (``archive migrate --archive incidents`` with
    both variables set reads the local folder, as it says)."""
    if isinstance(archive, Archive):
        return archive
    url = str(archive or os.environ.get(ARCHIVE_ENV) or DEFAULT_ARCHIVE)
    explicit_folder = archive is not None and not url.startswith("s3://")
    index = index or (SQLITE if explicit_folder else os.environ.get(INDEX_ENV)) or SQLITE
    remote = url.startswith("s3://")
    if "://" in url and not remote:
        raise ParameterError(f"--archive {url!r}: a folder or s3://bucket/prefix")
    if index == SQLITE and remote:
        raise ParameterError(f"--archive {url} needs --index (or ${INDEX_ENV}) set to a PostgreSQL DSN: "
                             "SQLite works on one host only")
    try:
        storage = open_storage(url)
    except ValueError as e:
        raise ParameterError(f"--archive: {e}") from None
    if index == SQLITE:
        from .index_sqlite import SqliteIndex

        folder = Path(url)
        return Archive(str(folder), storage, SqliteIndex(folder, busy_timeout), folder, folder)
    from .index_postgres import PostgresIndex, check_dsn

    try:
        check_dsn(index)
    except ValueError as e:
        raise ParameterError(str(e)) from None
    pg = PostgresIndex(index)
    key = hashlib.sha256(f"{storage.url}\n{pg.label}".encode()).hexdigest()[:16]
    folder = None if remote else Path(url)
    return Archive(storage.url, storage, pg, folder, state_dir() / "archives" / key)
