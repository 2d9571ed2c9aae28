"""The archive: an index beside the records, searching it, and proving that nothing was changed.

The index is ``<archive>/.index.sqlite`` (SQLite, WAL, a busy timeout so parallel runs queue up
instead of failing). :func:`write_record` writes a record and its index row in one step: the
notebook goes to an fsynced temporary file, then under its record name, then the row is added in
one ``BEGIN IMMEDIATE`` transaction, which also serialises reading and extending the chain tip.

Rows form a hash chain in insertion order (``seq``)::

    entry_hash = sha256(json([prev_hash, name, sha256, runbook, severity, environment,
                              incident_id, status, started_at, finished_at]))

with ``prev_hash`` the previous row's ``entry_hash`` (64 zeros for the first) and ``sha256`` the
record file's. :func:`verify` recomputes both and names every record modified, removed, or added
outside the tool; :func:`reindex` rebuilds the index (and a fresh chain) from the notebooks.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

log = logging.getLogger("smartops.archive")

INDEX_NAME = ".index.sqlite"
GENESIS = "0" * 64
BUSY_TIMEOUT_S = 30
#: Summary fields that the chain covers, besides the record's name and SHA-256.
CHAINED = ("runbook", "severity", "environment", "incident_id", "status", "started_at", "finished_at")
#: Cap on the cell-output text indexed per record (a runbook that prints a whole log stays searchable).
MAX_OUTPUT_CHARS = 200_000
DEFAULT_LIMIT = 50

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
_LIST_COLUMNS = ("name", "path", "sha256", "runbook", "title", "severity", "environment", "incident_id", "status",
                 "confirmed", "causes", "diagnosis", "detected_at", "started_at", "finished_at", "mode", "operator",
                 "actions_executed", "findings")


class IndexMissing(LookupError):
    pass


# -- connection -----------------------------------------------------------------------------------
def index_path(folder: Path) -> Path:
    return Path(folder) / INDEX_NAME


def connect(folder: Path, *, create: bool = True) -> sqlite3.Connection:
    """Open the index (autocommit; transactions are explicit). ``create=False``: it must exist."""
    path = index_path(folder)
    if not create and not path.exists():
        raise IndexMissing(f"no index at {path}")
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        con.row_factory = sqlite3.Row
        con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
        if not create:
            con = _readable(con, path)
        else:
            # Switching a new database to WAL needs an exclusive lock, and SQLite answers "database
            # is locked" at once (no busy wait) to writers racing that switch: serialise set-up.
            with _setup_lock(path):
                con.execute("PRAGMA journal_mode = WAL")  # persistent: readers never block the writer
                con.execute("PRAGMA synchronous = FULL")  # WAL's default (NORMAL) may lose a commit on power loss
                if not con.execute("SELECT 1 FROM sqlite_master WHERE name = 'records_fts'").fetchone():
                    with _immediate(con):
                        for statement in _SCHEMA:
                            con.execute(statement)
                        con.execute("INSERT OR IGNORE INTO meta VALUES ('created_at', ?)", (_now(),))
    except BaseException:
        con.close()
        raise
    return con


@contextmanager
def _setup_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (``<index>.lock``) around opening the index for writing."""
    import fcntl

    with open(f"{path}.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _readable(con: sqlite3.Connection, path: Path) -> sqlite3.Connection:
    """A reader on a full or read-only disk: WAL mode needs to create ``-shm``, which fails there.

    Then read the database file as immutable: after the last writer closed, SQLite has checkpointed
    the WAL into it, so nothing committed is missed (the ``disk-full`` incident's archive stays listable).
    """
    try:
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return con
    except sqlite3.OperationalError as e:
        if not any(m in str(e) for m in ("I/O", "unable to open", "readonly", "read-only")):
            raise
        con.close()
    log.debug("index %s not writable here: reading it as immutable", path)
    ro = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True, isolation_level=None)
    ro.row_factory = sqlite3.Row
    return ro


@contextmanager
def _immediate(con: sqlite3.Connection) -> Iterator[None]:
    """A write transaction that takes the write lock at BEGIN, so the chain tip cannot move under us."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


# -- what a record contributes to the index ---------------------------------------------------------
def entry_hash(prev_hash: str, name: str, sha256: str, fields: Any) -> str:
    material = [prev_hash, name, sha256, *[(fields[k] or "") for k in CHAINED]]
    return hashlib.sha256(json.dumps(material, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()


def _time(value: Any) -> str | None:
    if not value:
        return None
    from smartops_nb.params import iso, parse_time

    try:
        return iso(parse_time(value))
    except Exception:
        return str(value)


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def outputs_text(nb) -> str:
    """The stream, text/plain and error outputs of the code cells (already scrubbed in a record)."""
    parts = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        for out in cell.get("outputs", []):
            kind = out.get("output_type")
            if kind == "stream":
                parts.append(_text(out.get("text")))
            elif kind in ("execute_result", "display_data"):
                parts.append(_text(out.get("data", {}).get("text/plain")))
            elif kind == "error":
                parts.append(f"{out.get('ename', '')}: {out.get('evalue', '')}")
    return "\n".join(p for p in parts if p)[:MAX_OUTPUT_CHARS]


def describe(nb, data: bytes, name: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The index row (without chain fields) and the full-text columns of one record."""
    s = nb.get("metadata", {}).get("smartops")
    if not isinstance(s, dict) or not s.get("runbook"):
        raise ValueError("no metadata.smartops summary (not a SmartOps record)")
    diag = s.get("diagnosis") or {}
    findings = s.get("findings") or []
    actions = s.get("actions") or []
    started = _time(s.get("started_at")) or ""
    row = {
        "name": name, "path": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
        "runbook": str(s.get("runbook", "")), "title": str(s.get("title", "")),
        "severity": str(s.get("severity") or ""), "environment": str(s.get("environment") or ""),
        "incident_id": str(s.get("incident_id") or ""), "status": str(s.get("status") or ""),
        "confirmed": int(bool(diag.get("confirmed"))), "causes": " ".join(diag.get("causes") or []),
        "diagnosis": str(diag.get("summary") or ""), "detected_at": _time(s.get("detected_at")),
        "started_at": started, "finished_at": _time(s.get("finished_at")), "mode": str(s.get("mode") or ""),
        "operator": str(s.get("operator") or ""),
        "actions_executed": json.dumps([f"{a.get('action')} on {a.get('target')}" for a in actions
                                        if a.get("mode") == "executed"]),
        "findings": len(findings),
    }
    words = {
        "record": " ".join(str(x) for x in (name, s.get("runbook"), s.get("title"), s.get("incident_id"),
                                            s.get("environment"), s.get("severity"), s.get("operator")) if x),
        "findings": "\n".join(f"{f.get('check', '')} {f.get('status', '')}: {f.get('summary', '')}" for f in findings),
        "diagnosis": f"{diag.get('summary', '')}\n{' '.join(diag.get('causes') or [])}",
        "outputs": outputs_text(nb),
        "parameters": "\n".join(f"{k}={v}" for k, v in (s.get("parameters") or {}).items()),
    }
    return row, words


def _append(con: sqlite3.Connection, row: dict[str, Any], words: dict[str, str]) -> dict[str, Any]:
    """Add one row at the chain tip (call inside :func:`_immediate`)."""
    tip = con.execute("SELECT entry_hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
    prev = tip[0] if tip else GENESIS
    row = {**row, "prev_hash": prev, "entry_hash": entry_hash(prev, row["name"], row["sha256"], row),
           "indexed_at": _now()}
    cols = list(row)
    seq = con.execute(f"INSERT INTO records ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                      [row[c] for c in cols]).lastrowid
    con.executemany("INSERT OR IGNORE INTO record_causes (cause, seq) VALUES (?, ?)",
                    [(c, seq) for c in row["causes"].split()])
    con.execute("INSERT INTO records_fts (rowid, record, findings, diagnosis, outputs, parameters) "
                "VALUES (?, ?, ?, ?, ?, ?)", (seq, words["record"], words["findings"], words["diagnosis"],
                                              words["outputs"], words["parameters"]))
    return row


def _now() -> str:
    from smartops_nb.params import iso, utcnow

    return iso(utcnow())


# -- writing ---------------------------------------------------------------------------------------
def write_record(nb, summary: dict[str, Any], folder: Path) -> Path:
    """Write the record and its index row together; return the record's path.

    The file is complete or absent (staged, fsynced, then linked under its name). If the archive
    refuses the file, :class:`~smartops_nb.records.record.RecordWriteError` names the fallback copy and
    the index is untouched. If only the index refuses (locked too long, corrupt, full), the record
    is kept and the failure logged as an error: ``verify`` will name it, ``reindex`` adds it.
    """
    import nbformat

    from . import record

    folder = Path(folder)
    data = nbformat.writes(nb).encode()
    staged = record.stage(data, folder, summary)
    con: sqlite3.Connection | None = None
    problem: BaseException | None = None
    try:
        con = connect(folder)
        con.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as e:
        problem = e
    try:
        path = record.publish(staged, folder, summary)
    except BaseException:
        _close(con, rollback=problem is None)
        raise
    if problem is None:
        try:
            row, words = describe(nb, data, path.name)
            _append(con, row, words)
            con.execute("COMMIT")
        except (sqlite3.Error, ValueError) as e:
            _close(con, rollback=True)
            problem = e
    _close(con, rollback=False)
    if problem is not None:
        log.error("record %s written but NOT INDEXED (%s: %s): `smartops archive reindex --archive %s` adds it",
                  path, type(problem).__name__, problem, folder)
    return path


def _close(con: sqlite3.Connection | None, *, rollback: bool) -> None:
    if con is None:
        return
    try:
        if rollback and con.in_transaction:
            con.execute("ROLLBACK")
        con.close()
    except sqlite3.Error:
        pass


# -- reading ---------------------------------------------------------------------------------------
_SINCE = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: dt.datetime | None = None) -> str:
    """``7d``, ``24h``, ``30m``, ``2w`` or an ISO 8601 time → the ISO UTC cut-off (ValueError if neither)."""
    from smartops_nb.params import ParameterError, iso, parse_time, utcnow

    m = _SINCE.match(text)
    if m:
        return iso((now or utcnow()) - dt.timedelta(**{_UNITS[m[2]]: int(m[1])}))
    try:
        return iso(parse_time(text, name="since"))
    except ParameterError:
        raise ValueError(f"--since must be like 7d, 24h, 30m, 2w or an ISO 8601 time, got {text!r}") from None


def _where(clauses: list[str], args: list[Any], runbook=None, severity=None, environment=None, cause=None,
           since=None, status=None, incident_id=None) -> tuple[str, list[Any]]:
    """A WHERE clause for the list filters (after ``clauses`` already given)."""
    clauses, args = list(clauses), list(args)
    for col, value in (("runbook", runbook), ("severity", severity), ("environment", environment),
                       ("status", status), ("incident_id", incident_id)):
        if value:
            clauses.append(f"r.{col} = ?")
            args.append(value)
    if cause:
        clauses.append("r.seq IN (SELECT seq FROM record_causes WHERE cause = ?)")
        args.append(cause)
    if since:
        clauses.append("r.started_at >= ?")
        args.append(parse_since(since))
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


def _row(r: sqlite3.Row | dict[str, Any]) -> dict[str, Any]:
    """An index row as list/search return it (from the index, or :func:`describe`'s row)."""
    d = dict(r)
    d["confirmed"] = bool(d["confirmed"])
    d["causes"] = d["causes"].split()
    executed = d["actions_executed"]
    d["actions_executed"] = json.loads(executed) if executed and executed != "[]" else []
    return d


def list_records(folder: Path, *, limit: int = DEFAULT_LIMIT, **filters) -> list[dict[str, Any]]:
    """Index rows, newest first (``limit`` 0: all). Filters: runbook, severity, environment, cause,
    since, status, incident_id. Reads the index only, never a notebook."""
    where, args = _where([], [], **filters)
    sql = (f"SELECT {', '.join('r.' + c for c in _LIST_COLUMNS)} FROM records r{where} "
           f"ORDER BY r.started_at DESC, r.seq DESC")
    if limit:
        sql += f" LIMIT {int(limit)}"
    con = connect(folder, create=False)
    try:
        return [_row(r) for r in con.execute(sql, args)]
    finally:
        con.close()


class SearchSyntaxError(ValueError):
    pass


_FTS_SYNTAX = set('"()*^:+{}')


def fts_query(text: str) -> str:
    """Quote plain words FTS5 would reject as barewords (``idle-connection-leak``, ``10.0.0.5``) so
    they match as phrases; anything using FTS5 syntax (quotes, ``*``, ``:``, parentheses) is kept."""
    out = []
    for token in text.split():
        plain = not (_FTS_SYNTAX & set(token)) and token not in ("AND", "OR", "NOT", "NEAR")
        out.append(f'"{token}"' if plain and not re.fullmatch(r"\w+", token) else token)
    return " ".join(out)


def search(folder: Path, text: str, *, limit: int = DEFAULT_LIMIT, **filters) -> list[dict[str, Any]]:
    """Records whose findings, diagnosis, outputs or parameters match ``text`` (FTS5), best first."""
    where, args = _where(["records_fts MATCH ?"], [fts_query(text)], **filters)
    sql = (f"SELECT {', '.join('r.' + c for c in _LIST_COLUMNS)}, "
           f"snippet(records_fts, -1, '[', ']', '…', 10) AS match "
           f"FROM records_fts JOIN records r ON r.seq = records_fts.rowid{where} "
           f"ORDER BY records_fts.rank, r.started_at DESC")
    if limit:
        sql += f" LIMIT {int(limit)}"
    con = connect(folder, create=False)
    try:
        con.execute("SELECT 1 FROM records_fts LIMIT 1").fetchall()  # an unreadable index is not a syntax error
        try:
            return [_row(r) for r in con.execute(sql, args)]
        except sqlite3.OperationalError as e:
            if "locked" in str(e) or "I/O" in str(e):
                raise
            raise SearchSyntaxError(f"bad search syntax in {text!r} ({e})") from None
    finally:
        con.close()


def resolve(folder: Path, ref: str) -> Path:
    """A record by path, by name in the archive (``.ipynb`` optional), or by a unique name prefix."""
    for candidate in (Path(ref), Path(folder) / ref, Path(folder) / f"{ref}.ipynb"):
        if candidate.is_file():
            return candidate
    matches = sorted(p for p in Path(folder).glob(f"{glob_escape(ref)}*.ipynb")) if Path(folder).is_dir() else []
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise LookupError(f"{ref!r} matches {len(matches)} records in {folder}: "
                          + ", ".join(p.name for p in matches[:5]) + (" ..." if len(matches) > 5 else ""))
    raise LookupError(f"no record {ref!r} in {folder}")


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def indexed_entry(folder: Path, name: str) -> dict[str, str] | None:
    """The index's ``sha256`` and ``entry_hash`` for a record (None: not indexed, or no index)."""
    try:
        con = connect(folder, create=False)
    except IndexMissing:
        return None
    try:
        row = con.execute("SELECT sha256, entry_hash FROM records WHERE name = ?", (name,)).fetchone()
        return {"sha256": row[0], "entry_hash": row[1]} if row else None
    except sqlite3.Error:
        return None
    finally:
        con.close()


def indexed_hash(folder: Path, name: str) -> str | None:
    """The SHA-256 the index holds for a record (None: not indexed, or no index)."""
    entry = indexed_entry(folder, name)
    return entry["sha256"] if entry else None


def export_html(path: Path, out: Path) -> Path:
    """A standalone HTML page of the record (:func:`~.render.record_html`), written atomically."""
    from .render import record_html

    body = record_html(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(body, encoding="utf-8")
    os.replace(tmp, out)
    return out


# -- verify and reindex ----------------------------------------------------------------------------
@dataclass
class Problem:
    kind: str      # modified | removed | added | index-altered | unreadable
    name: str
    detail: str


@dataclass
class Verification:
    entries: int = 0
    files: int = 0
    tip: str = GENESIS
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def record_files(folder: Path) -> list[Path]:
    """The notebooks in the archive folder (hidden and temporary files are not records)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.ipynb") if p.is_file() and not p.name.startswith("."))


ANCHOR_MIN_HEX = 12


def verify(folder: Path, anchors: Iterable[str] = ()) -> Verification:
    """Recompute every record's SHA-256 and the chain; name what changed outside the tool.

    ``anchors``: chain entries published outside the archive (each notification carries its
    record's ``entry_hash``; a prefix of at least :data:`ANCHOR_MIN_HEX` hex digits will do). The
    chain alone cannot tell that its newest entries were deleted together with their records, or
    that it was recomputed from scratch; an anchor that is no longer in it can.
    """
    folder = Path(folder)
    report = Verification()
    unindexed = {p.name for p in record_files(folder)}
    report.files = len(unindexed)
    for p in sorted(folder.glob(".record-*.tmp")):
        report.warnings.append(f"{p.name}: temporary file left by an interrupted write (not a record)")
    try:
        con = connect(folder, create=False)
        rows = con.execute("SELECT * FROM records ORDER BY seq").fetchall()
        con.close()
    except (IndexMissing, sqlite3.Error) as e:
        why = "missing" if isinstance(e, IndexMissing) else f"unreadable ({e})"
        report.problems.append(Problem("index-altered", INDEX_NAME, f"the index is {why}"))
        rows = []
    prev = GENESIS
    for r in rows:
        name = r["name"]
        if r["prev_hash"] != prev:
            report.problems.append(Problem("index-altered", name, "chain broken before this entry: an index "
                                           "entry was removed or reordered"))
        if entry_hash(r["prev_hash"], name, r["sha256"], r) != r["entry_hash"]:
            report.problems.append(Problem("index-altered", name, "index entry altered: its fields do not match "
                                           "its hash"))
        prev = r["entry_hash"]
        unindexed.discard(r["path"])
        path = folder / r["path"]
        if not path.is_file():
            report.problems.append(Problem("removed", name, "in the index, missing from the folder"))
            continue
        try:
            actual = file_sha256(path)
        except OSError as e:
            report.problems.append(Problem("unreadable", name, str(e)))
            continue
        if actual != r["sha256"]:
            report.problems.append(Problem("modified", name, f"SHA-256 {actual[:12]}… differs from the index's "
                                           f"{r['sha256'][:12]}… (size {path.stat().st_size}, was {r['size']})"))
    report.entries, report.tip = len(rows), prev
    chain = [r["entry_hash"] for r in rows]
    for anchor in anchors:
        a = anchor.strip().lower()
        if not any(h.startswith(a) for h in chain):
            report.problems.append(Problem("anchor-missing", a[:16], "a chain entry published earlier is not in "
                                           "the chain: records were removed from its end, or the chain was "
                                           "rebuilt (reindex) since"))
    for name in sorted(unindexed):
        report.problems.append(Problem("added", name, "in the folder, not in the index (added outside the tool, "
                                       "or written while the index was unavailable)"))
    return report


@dataclass
class Reindexed:
    indexed: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)          # not in the previous index
    dropped: list[str] = field(default_factory=list)      # in the previous index, file gone
    changed: list[str] = field(default_factory=list)      # file's SHA-256 differs from the previous index
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, why)
    previous: int | None = None                           # entries before (None: no readable index)
    moved_aside: Path | None = None                       # an unreadable index, kept for inspection


class IndexUnavailable(RuntimeError):
    """The index cannot be rebuilt now (locked by another run, unwritable); it was left as it is."""


def reindex(folder: Path) -> Reindexed:
    """Rebuild the index from the notebooks' ``metadata["smartops"]``, chained in started_at order.

    Trusts the files as they are now: run it when the index is lost, or after ``verify`` found
    drift that you have looked at. One transaction, so a concurrent reader sees old or new.
    The files are listed and read inside that transaction: a writer holds the same lock while it
    publishes a record, so every file seen is complete and none appears unindexed meanwhile.
    An index that is not a database is moved aside; one that is busy (``database is locked``)
    or unwritable raises :class:`IndexUnavailable` and is left alone.
    """
    folder = Path(folder)
    out = Reindexed()
    con, old = _begin_rebuild(folder, out)
    try:
        described = _describe_all(folder, out)
        for table in ("records_fts", "record_causes", "records"):
            con.execute(f"DELETE FROM {table}")
        con.execute("DELETE FROM sqlite_sequence WHERE name = 'records'")
        for _, name, row, words in described:
            _append(con, row, words)
            out.indexed.append(name)
        con.execute("INSERT OR REPLACE INTO meta VALUES ('reindexed_at', ?)", (_now(),))
        con.execute("COMMIT")
    except sqlite3.Error as e:
        _close(con, rollback=True)
        raise IndexUnavailable(f"cannot rebuild the index {index_path(folder)}: {e}") from None
    except BaseException:
        _close(con, rollback=True)
        raise
    _close(con, rollback=False)
    current = {row["name"]: row["sha256"] for _, _, row, _ in described}
    out.new = sorted(set(current) - set(old)) if out.previous is not None else []
    out.dropped = sorted(set(old) - set(current))
    out.changed = sorted(n for n in set(old) & set(current) if old[n] != current[n])
    return out


def _corrupt(e: sqlite3.Error) -> bool:
    """The index file itself is damaged (as opposed to busy, read-only, or a full disk)."""
    return any(m in str(e) for m in ("not a database", "malformed"))


def _begin_rebuild(folder: Path, out: Reindexed) -> tuple[sqlite3.Connection, dict[str, str]]:
    """Open the index (a new one if missing or damaged) in ``BEGIN IMMEDIATE``; the previous entries."""
    existed = index_path(folder).exists()
    for attempt in (1, 2):
        con: sqlite3.Connection | None = None
        try:
            con = connect(folder)
            con.execute("BEGIN IMMEDIATE")
            old = dict(con.execute("SELECT name, sha256 FROM records").fetchall())
            out.previous = len(old) if existed else None
            return con, old
        except sqlite3.Error as e:
            _close(con, rollback=True)
            if attempt == 2 or not _corrupt(e):
                why = " (another smartops command is writing it; try again)" if "locked" in str(e) else ""
                raise IndexUnavailable(f"cannot rebuild the index {index_path(folder)}: {e}{why}") from None
            out.moved_aside = _move_aside(folder)
            existed = False
    raise AssertionError("unreachable")


def _describe_all(folder: Path, out: Reindexed) -> list[tuple[str, str, dict[str, Any], dict[str, str]]]:
    """Every record file's index row, in chain order (started_at, then name); the others in ``skipped``."""
    import nbformat

    described = []
    for path in record_files(folder):
        try:
            data = path.read_bytes()
            row, words = describe(nbformat.reads(data.decode(), as_version=4), data, path.name)
        except Exception as e:  # not JSON, not a notebook, not a SmartOps record
            out.skipped.append((path.name, str(e).splitlines()[0] if str(e) else type(e).__name__))
            continue
        described.append((row["started_at"], path.name, row, words))
    described.sort(key=lambda x: (x[0], x[1]))
    return described


def _move_aside(folder: Path) -> Path:
    stamp = _now().replace(":", "-")
    target = index_path(folder).with_name(f"{INDEX_NAME}.broken-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{index_path(folder)}{suffix}")
        if src.exists():
            os.replace(src, Path(f"{target}{suffix}"))
    return target
