"""The index beside a folder archive: ``<archive>/.index.sqlite`` (SQLite, WAL, FTS5).

A busy timeout makes parallel runs on one host queue up instead of failing; ``BEGIN IMMEDIATE``
takes the write lock at the start of a transaction, which serialises reading and extending the
chain tip. SQLite's locks work on one host only: a team shares :mod:`.index_postgres` instead.
"""
from __future__ import annotations

import logging
import os
import re
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from smartops_nb.support.files import locked

from .entries import (GENESIS, LIST_COLUMNS, Appender, Index, IndexMissing, IndexUnavailable, SearchSyntaxError,
                      chained, claim_in, now, public_row, where)

log = logging.getLogger("smartops.archive")

INDEX_NAME = ".index.sqlite"
BUSY_TIMEOUT_S = 30

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS records (
        seq              INTEGER PRIMARY KEY AUTOINCREMENT,  -- chain order
        name             TEXT NOT NULL UNIQUE,
        path             TEXT NOT NULL,                      -- relative to the archive folder
        sha256           TEXT NOT NULL,                      -- of the record file's bytes
        size             INTEGER NOT NULL,
        prev_hash        TEXT NOT NULL,
        entry_hash       TEXT NOT NULL,
        runbook          TEXT NOT NULL,
        title            TEXT NOT NULL DEFAULT '',
        severity         TEXT NOT NULL DEFAULT '',
        environment      TEXT NOT NULL DEFAULT '',
        incident_id      TEXT NOT NULL DEFAULT '',
        status           TEXT NOT NULL DEFAULT '',
        confirmed        INTEGER NOT NULL DEFAULT 0,
        causes           TEXT NOT NULL DEFAULT '',           -- space-separated cause codes
        diagnosis        TEXT NOT NULL DEFAULT '',
        detected_at      TEXT,
        started_at       TEXT NOT NULL,                      -- ISO 8601 UTC, sorts as text
        finished_at      TEXT,
        mode             TEXT NOT NULL DEFAULT '',
        operator         TEXT NOT NULL DEFAULT '',
        actions_executed TEXT NOT NULL DEFAULT '[]',         -- JSON: ["action on target", ...]
        findings         INTEGER NOT NULL DEFAULT 0,
        indexed_at       TEXT NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS record_causes (cause TEXT NOT NULL, seq INTEGER NOT NULL, "
    "PRIMARY KEY (cause, seq)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS records_started ON records (started_at, seq)",
    *(f"CREATE INDEX IF NOT EXISTS records_{c} ON records ({c}, started_at)"
      for c in ("runbook", "severity", "environment", "status", "incident_id")),
    "CREATE VIRTUAL TABLE IF NOT EXISTS records_fts USING fts5("
    "record, findings, diagnosis, outputs, parameters, tokenize='unicode61')",
]
#: Added by the first alert ``smartops serve`` takes in (see :meth:`SqliteIndex.claim_episode`).
_EPISODES = ("CREATE TABLE IF NOT EXISTS alert_episodes (incident_id TEXT NOT NULL, kind TEXT NOT NULL, "
             "first_at TEXT NOT NULL, run_at TEXT NOT NULL, repeats INTEGER NOT NULL DEFAULT 0, "
             "PRIMARY KEY (incident_id, kind)) WITHOUT ROWID")
#: Added by ``archive prune`` when it first prunes (an index written before keeps its exact tables).
_TOMBSTONES = ("CREATE TABLE IF NOT EXISTS tombstones (name TEXT PRIMARY KEY, sha256 TEXT NOT NULL, "
               "pruned_at TEXT NOT NULL, why TEXT NOT NULL)")


# -- connection -----------------------------------------------------------------------------------
def index_path(folder: Path) -> Path:
    return Path(folder) / INDEX_NAME


def connect(folder: Path, *, create: bool = True, timeout: float | None = None) -> sqlite3.Connection:
    """Open the index (autocommit; transactions are explicit). ``create=False``: it must exist."""
    timeout = BUSY_TIMEOUT_S if timeout is None else timeout
    path = index_path(folder)
    if not create and not path.exists():
        raise IndexMissing(f"no index at {path}")
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    absent = [f for f in _wal_files(path) if not f.exists()]  # a failed reader removes only what it made
    con = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    try:
        con.row_factory = sqlite3.Row
        con.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        if not create:
            con = _readable(con, path, absent)
        else:
            # Switching a new database to WAL needs an exclusive lock, and SQLite answers "database
            # is locked" at once (no busy wait) to writers racing that switch: serialise set-up.
            with _setup_lock(path):
                con.execute("PRAGMA journal_mode = WAL")  # persistent: readers never block the writer
                con.execute("PRAGMA synchronous = FULL")  # WAL's default (NORMAL) may lose a commit on power loss
                if not con.execute("SELECT 1 FROM sqlite_master WHERE name = 'records_fts'").fetchone():
                    with immediate(con):
                        for statement in _SCHEMA:
                            con.execute(statement)
                        con.execute("INSERT OR IGNORE INTO meta VALUES ('created_at', ?)", (now(),))
    except BaseException:
        con.close()
        raise
    return con


@contextmanager
def _setup_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (``<index>.lock``) around opening the index for writing."""
    with locked(f"{path}.lock"):
        yield


def _wal_files(path: Path) -> list[Path]:
    return [path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def _readable(con: sqlite3.Connection, path: Path, absent: list[Path] = ()) -> sqlite3.Connection:
    """A reader on a full or read-only disk: WAL mode needs to create ``-shm``, which fails there.

    Then read the database file as immutable: after the last writer closed, SQLite has checkpointed
    the WAL into it, so nothing committed is missed (the ``disk-full`` incident's archive stays listable).
    The failed attempt's half-made ``-wal``/``-shm`` (``absent`` before it, the WAL still empty) are
    removed: a reader leaves the archive as it found it.
    """
    try:
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return con
    except sqlite3.OperationalError as e:
        if not any(m in str(e) for m in ("I/O", "unable to open", "readonly", "read-only")):
            raise
        con.close()
    wal = _wal_files(path)[0]
    try:
        if wal in absent and (not wal.exists() or wal.stat().st_size == 0):
            for f in absent:
                f.unlink(missing_ok=True)
    except OSError:  # a read-only disk: the failed attempt could not have made them either
        pass
    log.debug("index %s not writable here: reading it as immutable", path)
    ro = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True, isolation_level=None)
    ro.row_factory = sqlite3.Row
    return ro


@contextmanager
def immediate(con: sqlite3.Connection) -> Iterator[None]:
    """A write transaction that takes the write lock at BEGIN, so the chain tip cannot move under us."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def close_quietly(con: sqlite3.Connection | None, *, rollback: bool) -> None:
    if con is None:
        return
    try:
        if rollback and con.in_transaction:
            con.execute("ROLLBACK")
        con.close()
    except sqlite3.Error:
        pass


def _insert(con: sqlite3.Connection, row: dict[str, Any], words: dict[str, str]) -> None:
    cols = list(row)
    seq = con.execute(f"INSERT INTO records ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                      [row[c] for c in cols]).lastrowid
    con.executemany("INSERT OR IGNORE INTO record_causes (cause, seq) VALUES (?, ?)",
                    [(c, seq) for c in row["causes"].split()])
    con.execute("INSERT INTO records_fts (rowid, record, findings, diagnosis, outputs, parameters) "
                "VALUES (?, ?, ?, ?, ?, ?)", (seq, words["record"], words["findings"], words["diagnosis"],
                                              words["outputs"], words["parameters"]))


def append_entry(con: sqlite3.Connection, row: dict[str, Any], words: dict[str, str]) -> dict[str, Any]:
    """Add one row at the chain tip (call inside :func:`immediate`)."""
    tip = con.execute("SELECT entry_hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
    row = chained(tip[0] if tip else GENESIS, row)
    _insert(con, row, words)
    return row


_FTS_SYNTAX = set('"()*^:+{}')


def fts_query(text: str) -> str:
    """Quote plain words FTS5 would reject as barewords (``idle-connection-leak``, ``10.0.0.5``) so
    they match as phrases; anything using FTS5 syntax (quotes, ``*``, ``:``, parentheses) is kept."""
    out = []
    for token in text.split():
        plain = not (_FTS_SYNTAX & set(token)) and token not in ("AND", "OR", "NOT", "NEAR")
        out.append(f'"{token}"' if plain and not re.fullmatch(r"\w+", token) else token)
    return " ".join(out)


def _corrupt(e: sqlite3.Error) -> bool:
    """The index file itself is damaged (as opposed to busy, read-only, or a full disk)."""
    return any(m in str(e) for m in ("not a database", "malformed"))


def _move_aside(folder: Path) -> Path:
    stamp = now().replace(":", "-")
    target = index_path(folder).with_name(f"{INDEX_NAME}.broken-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{index_path(folder)}{suffix}")
        if src.exists():
            os.replace(src, Path(f"{target}{suffix}"))
    return target


# -- the Index interface ------------------------------------------------------------------------------
class _SqliteAppender(Appender):
    def __init__(self, con: sqlite3.Connection):
        self.con = con

    def append(self, row, words):
        return append_entry(self.con, row, words)

    def copy(self, row, words):
        _insert(self.con, {k: v for k, v in row.items() if k != "seq"}, words)

    def has(self, name):
        return self.con.execute("SELECT 1 FROM records WHERE name = ?", (name,)).fetchone() is not None

    def empty(self):
        return self.con.execute("SELECT 1 FROM records LIMIT 1").fetchone() is None

    def tombstone(self, name, sha256, why):
        self.con.execute(_TOMBSTONES)
        self.con.execute("INSERT OR REPLACE INTO tombstones VALUES (?, ?, ?, ?)", (name, sha256, now(), why))

    def set_meta(self, key, value):
        self.con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))


class SqliteIndex(Index):
    """``<folder>/.index.sqlite``. ``busy_timeout``: seconds a writer waits for another's lock."""

    problem_name = INDEX_NAME

    def __init__(self, folder: Path, busy_timeout: float | None = None):
        self.folder = Path(folder)
        self.busy_timeout = busy_timeout
        self.label = str(index_path(self.folder))

    def _read(self) -> sqlite3.Connection:
        return connect(self.folder, create=False, timeout=self.busy_timeout)

    def rows(self):
        try:
            con = self._read()
        except sqlite3.Error as e:
            raise IndexUnavailable(f"unreadable ({e})") from None
        try:
            return [dict(r) for r in con.execute("SELECT * FROM records ORDER BY seq")]
        except sqlite3.Error as e:
            raise IndexUnavailable(f"unreadable ({e})") from None
        finally:
            con.close()

    def list(self, limit, **filters):
        clause, args = where([], [], "?", **filters)
        sql = (f"SELECT {', '.join('r.' + c for c in LIST_COLUMNS)} FROM records r{clause} "
               f"ORDER BY r.started_at DESC, r.seq DESC")
        if limit:
            sql += f" LIMIT {int(limit)}"
        con = self._read()
        try:
            return [public_row(r) for r in con.execute(sql, args)]
        finally:
            con.close()

    def search(self, text, limit, **filters):
        clause, args = where(["records_fts MATCH ?"], [fts_query(text)], "?", **filters)
        sql = (f"SELECT {', '.join('r.' + c for c in LIST_COLUMNS)}, "
               f"snippet(records_fts, -1, '[', ']', '…', 10) AS match "
               f"FROM records_fts JOIN records r ON r.seq = records_fts.rowid{clause} "
               f"ORDER BY records_fts.rank, r.started_at DESC")
        if limit:
            sql += f" LIMIT {int(limit)}"
        con = self._read()
        try:
            con.execute("SELECT 1 FROM records_fts LIMIT 1").fetchall()  # an unreadable index is not a syntax error
            try:
                return [public_row(r) for r in con.execute(sql, args)]
            except sqlite3.OperationalError as e:
                if "locked" in str(e) or "I/O" in str(e):
                    raise
                raise SearchSyntaxError(f"bad search syntax in {text!r} ({e})") from None
        finally:
            con.close()

    def entry(self, name):
        try:
            con = self._read()
        except IndexMissing:
            return None
        try:
            row = con.execute("SELECT sha256, entry_hash FROM records WHERE name = ?", (name,)).fetchone()
            return {"sha256": row[0], "entry_hash": row[1]} if row else None
        except sqlite3.Error:
            return None
        finally:
            con.close()

    def tombstones(self):
        try:
            con = self._read()
        except IndexMissing:
            return {}
        try:
            if not con.execute("SELECT 1 FROM sqlite_master WHERE name = 'tombstones'").fetchone():
                return {}
            return {r["name"]: dict(r) for r in con.execute("SELECT * FROM tombstones")}
        except sqlite3.Error as e:
            raise IndexUnavailable(f"unreadable ({e})") from None
        finally:
            con.close()

    def meta(self):
        try:
            con = self._read()
        except IndexMissing:
            return {}
        try:
            return dict(con.execute("SELECT key, value FROM meta").fetchall())
        finally:
            con.close()

    @contextmanager
    def appending(self) -> Iterator[Appender]:
        with self._writing() as con:
            yield _SqliteAppender(con)

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """The index in a write transaction (``BEGIN IMMEDIATE``), committed on exit."""
        try:
            con = connect(self.folder, timeout=self.busy_timeout)
        except sqlite3.Error as e:
            raise IndexUnavailable(f"cannot open {self.label}: {e}") from None
        try:
            with immediate(con):
                yield con
        except sqlite3.Error as e:
            raise IndexUnavailable(f"cannot write {self.label}: {e}") from None
        finally:
            con.close()

    # -- alert episodes (smartops serve's idempotent intake) -------------------------------------------
    @contextmanager
    def _episodes(self) -> Iterator[sqlite3.Connection]:
        """The index in a write transaction, its episodes table made if missing."""
        with self._writing() as con:
            con.execute(_EPISODES)
            yield con

    def claim_episode(self, incident_id, kind, recheck_after=0.0):
        with self._episodes() as con:
            return claim_in(con, "?", incident_id, kind, recheck_after)

    def release_episode(self, incident_id, kind):
        with self._episodes() as con:
            con.execute("DELETE FROM alert_episodes WHERE incident_id = ? AND kind = ?", (incident_id, kind))

    def tables(self, block, *, write=False):
        return tables_db(self.folder, *BLOCKS[block], write=write)

    def rebuild(self, describe_all, out):
        con, old = self._begin_rebuild(out)
        try:
            described = describe_all()
            for table in ("records_fts", "record_causes", "records"):
                con.execute(f"DELETE FROM {table}")
            con.execute("DELETE FROM sqlite_sequence WHERE name = 'records'")
            for row, words in described:
                append_entry(con, row, words)
            con.execute("INSERT OR REPLACE INTO meta VALUES ('reindexed_at', ?)", (now(),))
            con.execute("COMMIT")
        except sqlite3.Error as e:
            close_quietly(con, rollback=True)
            raise IndexUnavailable(f"cannot rebuild the index {self.label}: {e}") from None
        except BaseException:
            close_quietly(con, rollback=True)
            raise
        close_quietly(con, rollback=False)
        return old

    def _begin_rebuild(self, out) -> tuple[sqlite3.Connection, dict[str, str]]:
        """Open the index (a new one if missing or damaged) in ``BEGIN IMMEDIATE``; the previous entries."""
        existed = index_path(self.folder).exists()
        for attempt in (1, 2):
            con: sqlite3.Connection | None = None
            try:
                con = connect(self.folder, timeout=self.busy_timeout)
                con.execute("BEGIN IMMEDIATE")
                old = dict(con.execute("SELECT name, sha256 FROM records").fetchall())
                out.previous = len(old) if existed else None
                return con, old
            except sqlite3.Error as e:
                close_quietly(con, rollback=True)
                if attempt == 2 or not _corrupt(e):
                    why = " (another smartops command is writing it; try again)" if "locked" in str(e) else ""
                    raise IndexUnavailable(f"cannot rebuild the index {self.label}: {e}{why}") from None
                out.moved_aside = _move_aside(self.folder)
                existed = False
        raise AssertionError("unreachable")


# ==== post-incident checklist (smartops_nb/postincident) ============================================
# Its own tables beside the records' (created on first use, so an index written before keeps its exact
# tables): each checklist item's state per incident, the idempotency keys of what was created outside
# (a status-page incident, a tracker issue, a ticket, an invitation) and the lessons learned. The same
# columns as index_postgres.POSTINCIDENT_DDL. Queries are in smartops_nb/postincident/state.py.
POSTINCIDENT_DDL = (
    "CREATE TABLE IF NOT EXISTS postincident_items (incident_id TEXT NOT NULL, item TEXT NOT NULL, "
    "status TEXT NOT NULL, at TEXT NOT NULL, by_whom TEXT NOT NULL DEFAULT '', link TEXT NOT NULL DEFAULT '', "
    "error TEXT NOT NULL DEFAULT '', detail TEXT NOT NULL DEFAULT '{}', PRIMARY KEY (incident_id, item))",
    "CREATE TABLE IF NOT EXISTS postincident_keys (key TEXT PRIMARY KEY, incident_id TEXT NOT NULL, "
    "item TEXT NOT NULL, ref TEXT NOT NULL DEFAULT '', link TEXT NOT NULL DEFAULT '', claimed_at TEXT NOT NULL, "
    "done_at TEXT)",
    "CREATE TABLE IF NOT EXISTS lessons (id TEXT PRIMARY KEY, incident_id TEXT NOT NULL, runbook TEXT NOT NULL, "
    "text TEXT NOT NULL, by_whom TEXT NOT NULL DEFAULT '', at TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS lessons_runbook ON lessons (runbook, at)",
)


# ==== end of post-incident checklist ================================================================


# ==== people: personal tokens (smartops_nb/people/tokens.py) ========================================
# Only a SHA-256 hash of each token is kept. The same columns as index_postgres.PEOPLE_DDL.
PEOPLE_DDL = (
    "CREATE TABLE IF NOT EXISTS tokens (id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, user_name TEXT NOT NULL, "
    "role TEXT NOT NULL, created_at TEXT NOT NULL, created_by TEXT NOT NULL DEFAULT '', expires_at TEXT, "
    "revoked_at TEXT)",
)


#: The blocks of tables beside the records' (:meth:`SqliteIndex.tables`): name → (newest table, DDL).
BLOCKS = {"postincident": ("lessons", POSTINCIDENT_DDL), "people": ("tokens", PEOPLE_DDL)}


@contextmanager
def tables_db(folder: Path, newest: str, ddl: tuple[str, ...], *, write: bool = False) -> Iterator[sqlite3.Connection | None]:
    """The index with a block of tables beside the records' (made by ``ddl`` when ``newest`` is missing
    and ``write``); None when reading an archive without them."""
    try:
        con = connect(folder, create=write)
    except IndexMissing:
        yield None
        return
    try:
        if con.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (newest,)).fetchone() is None:
            if not write:
                yield None
                return
            with _setup_lock(index_path(folder)):
                for statement in ddl:
                    con.execute(statement)
        yield con
    finally:
        con.close()
# ==== end of people =================================================================================
