"""The archive: records, an index of them, searching it, and proving that nothing was changed.

An :class:`Archive` is a storage for the record files (:mod:`.storage`: a folder, or
``s3://bucket/prefix``, chosen by the URL's scheme from :data:`.storage.STORAGES`) and an index of
them (:mod:`.index_sqlite` beside a folder, or :mod:`.index_postgres` for a team). It is opened once,
where a command, ``smartops serve``, a worker or the lab starts (:func:`open_archive`, from
``--archive`` and ``--index``), and that object is what every other part is handed.

``--archive`` ($SMARTOPS_ARCHIVE) is a folder (the default, ``./incidents``) or ``s3://bucket/prefix``;
``--index`` ($SMARTOPS_INDEX) is ``sqlite`` (``.index.sqlite`` beside a folder, the default) or a
PostgreSQL DSN, which an ``s3://`` archive requires. A folder with its SQLite index is *local*:
:meth:`Archive.write` puts the notebook in an fsynced temporary file, then under its record name,
then adds the row in one ``BEGIN IMMEDIATE`` transaction, which also serialises reading and
extending the chain tip. Any other pair is *shared*: a record is first kept in a local spool
(:mod:`.spool`), then, holding the index's chain lock, the object is written and then its row, so a
store that is down never loses it; a crash between the two leaves an object that ``verify`` names
and ``reindex --adopt`` (or the next ``sync``) adopts.

Rows form a hash chain in insertion order (``seq``), see :mod:`.entries`::

    entry_hash = sha256(json([prev_hash, name, sha256, runbook, severity, environment,
                              incident_id, status, started_at, finished_at]))

with ``prev_hash`` the previous row's ``entry_hash`` (64 zeros for the first) and ``sha256`` the
record file's. :meth:`Archive.verify` recomputes both and names every record modified, removed, or
added outside the tool, and every pruned one (a tombstone keeps its entry: :meth:`Archive.prune`);
:meth:`Archive.reindex` rebuilds the index (and a fresh chain) from the records;
:meth:`Archive.migrate` copies an archive into another, entries and hashes unchanged.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from smartops_nb.contract import ARCHIVE_ENV, DEFAULT_ARCHIVE, INDEX_ENV, STATE_DIR_ENV, ParameterError

from . import record, spool
from .entries import (DEFAULT_LIMIT, GENESIS, TABLE_BLOCKS, TEXT_COLUMNS, Index, IndexMissing, IndexUnavailable,
                      describe, entry_hash, now, parse_since)
from .plans import PlanStore, PostgresPlanStore, SqlitePlanStore
from .storage import FolderStorage, Storage, StorageUnavailable, open_storage, record_files
from smartops_nb.support.files import replace_atomically
from smartops_nb.support.reasons import one_line

log = logging.getLogger("smartops.archive")

#: ``--index`` for a folder's own index (``.index.sqlite`` beside its records).
SQLITE = "sqlite"
#: Seconds a writer waits for the SQLite index's lock (read at each write: tests shorten it).
BUSY_TIMEOUT_S = 30
#: What a shared archive can fail with while a record is written: the record stays in the spool.
UNREACHABLE = (StorageUnavailable, IndexUnavailable, ValueError)
#: The shortest prefix of a chain entry ``verify --anchor`` takes.
ANCHOR_MIN_HEX = 12


# -- what the archive's commands report ----------------------------------------------------------------
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
    pruned: list[str] = field(default_factory=list)  # names whose tombstone keeps their entry

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class Reindexed:
    indexed: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)          # not in the previous index
    dropped: list[str] = field(default_factory=list)      # in the previous index, file gone
    changed: list[str] = field(default_factory=list)      # file's SHA-256 differs from the previous index
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, why)
    previous: int | None = None                           # entries before (None: no readable index)
    moved_aside: Path | None = None                       # an unreadable index, kept for inspection


class ArchiveRefused(ValueError):
    """The command cannot be done on these archives as they are (one line; nothing was changed)."""


@dataclass
class Migrated:
    copied: list[str] = field(default_factory=list)
    tombstones: int = 0
    tip: str = GENESIS
    tables: dict[str, int] = field(default_factory=dict)  # rows copied per table beside the entries
    resumed: bool = False  # an earlier migrate copied the entries and plans, then stopped: this one finished


@dataclass
class Pruned:
    cutoff: str
    pruned: list[str] = field(default_factory=list)
    kept_open: list[str] = field(default_factory=list)       # of an incident still open
    kept_confirmed: list[str] = field(default_factory=list)  # --keep-confirmed


# -- small helpers -------------------------------------------------------------------------------------
def state_dir() -> Path:
    """This machine's SmartOps state: $SMARTOPS_STATE_DIR or ~/.smartops."""
    return Path(os.environ.get(STATE_DIR_ENV) or Path.home() / ".smartops")


def summary_of(data: bytes) -> dict[str, Any]:
    """A record file's ``metadata.smartops`` (empty when it has none), without nbformat's validation."""
    return json.loads(data).get("metadata", {}).get("smartops", {})


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def open_incidents(rows: list[dict[str, Any]]) -> set[str]:
    """Incident ids whose latest record is not a completed run that confirms nothing (not resolved yet)."""
    latest: dict[str, dict[str, Any]] = {}
    for r in rows:
        i = r["incident_id"]
        if i and (i not in latest or (r["started_at"], r["seq"]) > (latest[i]["started_at"], latest[i]["seq"])):
            latest[i] = r
    return {i for i, r in latest.items() if not (r["status"] == "completed" and not r["confirmed"])}


def _read_notebook(data: bytes):
    import nbformat

    return nbformat.reads(data.decode(), as_version=4)


class Archive:
    """One archive: its records' :class:`~.storage.Storage` and its :class:`~.entries.Index`.

    ``folder``: a folder archive's folder (None for ``s3://``); ``local_dir``: this machine's folder
    for it (the notification log, the spool, read-only copies of remote records)."""

    def __init__(self, url: str, storage: Storage, index: Index, folder: Path | None, local_dir: Path):
        self.url, self.storage, self.index, self.folder, self.local_dir = url, storage, index, folder, local_dir

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"Archive({self.url!r}, index={self.index.label!r})"

    @property
    def shared(self) -> bool:
        """Written through the spool (anything but a folder with its SQLite index)."""
        from .index_sqlite import SqliteIndex

        return not (isinstance(self.storage, FolderStorage) and isinstance(self.index, SqliteIndex))

    @property
    def log_dir(self) -> Path:
        """Where this machine keeps files about the archive that are not records (the notification
        log): the folder itself for a local archive, else :attr:`local_dir`."""
        return self.folder if not self.shared else Path(self.local_dir)

    def plan_store(self) -> PlanStore:
        """Where this archive's plans are decided: beside a folder with its SQLite index, else in
        the PostgreSQL index (every machine of the team approves from it)."""
        from .index_postgres import PostgresIndex

        if isinstance(self.index, PostgresIndex):
            return PostgresPlanStore(self.index)
        return SqlitePlanStore(self.folder)

    def tables(self, block: str, *, write: bool = False):
        """A connection to one block of tables this archive's index keeps beside the records'
        (:data:`~.entries.TABLE_BLOCKS`: ``postincident``, ``people``); None when reading an index that
        has none yet. Queries are written with ``?`` placeholders and passed through :meth:`sql`."""
        return self.index.tables(block, write=write)

    def sql(self, text: str) -> str:
        return self.index.sql(text)

    # -- writing -------------------------------------------------------------------------------------
    def store(self, nb, summary: dict[str, Any], *, secrets: Iterable[str] = (),
              add_cell: bool = False) -> tuple[Path | str, dict[str, Any]]:
        """Summary + executed notebook → scrubbed record in the archive; return its path (a folder) or
        URL (``s3://``) and the stored summary. Headless runs, ``smartops serve`` and the JupyterLab
        "Save incident record" button all write through here: same metadata, same scrubbing, an entry.

        ``add_cell``: the notebook did not show the summary itself (it did not reach ``run.finish()``),
        so it is appended as a last cell. Raises :class:`~smartops_nb.records.record.RecordWriteError`
        when the archive refuses it (the notebook is kept in a fallback folder, or for a shared archive
        in the local spool, which the error names)."""
        record.attach_summary(nb, summary, add_cell=add_cell)
        nb = record.scrub_notebook(nb, list(secrets))
        path = self.write(nb, summary)
        return path, nb.metadata["smartops"]  # its plans are registered with it (approvable from the alert)

    def write(self, nb, summary: dict[str, Any]) -> Path | str:
        """Write the record and its index row; return the record's path (a folder) or URL (S3).

        A folder with its SQLite index: see :meth:`_write_local`. A shared archive: the record is
        spooled locally, then the spool is sent in order (:meth:`sync`, this record last). If the store
        or the index cannot take it, :class:`~smartops_nb.records.record.RecordWriteError` says so and
        names the spooled copy, which the next write or ``smartops archive sync`` sends.
        """
        import nbformat

        data = nbformat.writes(nb).encode()
        if not self.shared:
            return self._write_local(nb, data, summary)
        try:
            # spooled and sent under the spool's lock: no other thread or command sends this entry meanwhile
            with spool.draining(self.local_dir):
                entry = spool.put(self.local_dir, data, record.record_name(summary))
                try:
                    return self._send_spool()[entry.name]
                except UNREACHABLE as e:
                    raise record.RecordWriteError(
                        f"cannot write to {self.url}: {one_line(e, typed=False)}; record kept in the spool at {entry} "
                        f"(`smartops archive sync` sends it)", entry) from None
        except record.RecordWriteError:
            raise
        except OSError as e:  # this machine's own disk refused the spool: the fallback folder, as for a folder
            raise record.unsaved(data, summary, Path(self.local_dir), e) from e

    def _write_local(self, nb, data: bytes, summary: dict[str, Any]) -> Path:
        """A folder archive with its SQLite index: the record file and its index row together.

        The file is complete or absent (staged, fsynced, then linked under its name). If the archive
        refuses the file, :class:`~smartops_nb.records.record.RecordWriteError` names the fallback copy
        and the index is untouched. If only the index refuses (locked too long, corrupt, full), the
        record is kept and the failure logged as an error: ``verify`` will name it, ``reindex`` adds it.
        """
        from .index_sqlite import append_entry, close_quietly, connect

        folder = self.folder
        staged = record.stage(data, folder, summary)
        con: sqlite3.Connection | None = None
        problem: BaseException | None = None
        try:
            con = connect(folder, timeout=BUSY_TIMEOUT_S)
            con.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            problem = e
        try:
            path = record.publish(staged, folder, summary)
        except BaseException:
            close_quietly(con, rollback=problem is None)
            raise
        if problem is None:
            try:
                row, words = describe(nb, data, path.name)
                append_entry(con, row, words)
                con.execute("COMMIT")
            except (sqlite3.Error, ValueError) as e:
                close_quietly(con, rollback=True)
                problem = e
        close_quietly(con, rollback=False)
        if problem is not None:
            log.error("record %s written but NOT INDEXED (%s: %s): `smartops archive reindex --archive %s` adds it",
                      path, type(problem).__name__, problem, folder)
        self._register_plans(nb.metadata.get("smartops") or summary, path.name)
        return path

    def _register_plans(self, summary: dict[str, Any], name: str) -> None:
        """A folder archive's plans, beside it: the record is written whatever happens here; only
        approving from it would be lost, and the log says so."""
        if not summary.get("plans"):
            return
        try:
            self.plan_store().register(summary, name)
        except (OSError, sqlite3.Error) as e:
            log.error("plans of %s not registered (%s): they cannot be approved; re-run the runbook", name, e)

    def sync(self) -> dict[str, str]:
        """Upload and index every spooled record of a shared archive, oldest first; spool entry → URL.

        Stops at the first failure (raising it), so the order and the chain stay intact; what was
        sent is gone from the spool.
        """
        with spool.draining(self.local_dir):
            return self._send_spool()

    def _send_spool(self) -> dict[str, str]:
        """:meth:`sync`'s work, the spool's lock held."""
        sent: dict[str, str] = {}
        for entry in spool.entries(self.local_dir):
            data = entry.read_bytes()
            nb = _read_notebook(data)
            summary = nb.metadata["smartops"]
            with self.index.appending() as tx:
                name = self._place(tx, data, summary)
                row, words = describe(nb, data, name)
                tx.append(row, words)
                self.plan_store().register(summary, name, tx=tx)  # in the index's transaction
            entry.unlink()
            sent[entry.name] = self.storage.where(name)
            log.info("record %s archived", sent[entry.name])
        return sent

    def _place(self, tx, data: bytes, summary: dict[str, Any]) -> str:
        """Write the object under a free record name (holding the chain lock); its name.

        An object already there with these very bytes and no entry was written by an earlier attempt
        that failed before its index row: it is adopted, not written twice.
        """
        digest = (hashlib.sha256(data).hexdigest(), len(data))
        for n in range(1000):
            name = record.record_name(summary, n)
            if tx.has(name):
                continue
            if not self.storage.exists(name):
                break
            if self.storage.hashes([name]).get(name) == digest:
                return name
        return self.storage.put_new(data, summary, taken=tx.has)

    # -- reading -------------------------------------------------------------------------------------
    def list(self, *, limit: int = DEFAULT_LIMIT, **filters) -> list[dict[str, Any]]:
        """Index rows, newest first (``limit`` 0: all). Filters: runbook, severity, environment, cause,
        since, status, incident_id. Reads the index only, never a record."""
        return self.index.list(limit, **filters)

    def search(self, text: str, *, limit: int = DEFAULT_LIMIT, **filters) -> list[dict[str, Any]]:
        """Records whose findings, diagnosis, outputs or parameters match ``text``, best first."""
        return self.index.search(text, limit, **filters)

    def read_summary(self, name: str) -> dict[str, Any]:
        """A record's ``metadata.smartops`` read through the archive's storage (a folder or S3)."""
        return summary_of(self.storage.read(name))

    def entry(self, name: str) -> dict[str, str] | None:
        """The index's ``sha256`` and ``entry_hash`` for a record (None: not indexed, or no index)."""
        return self.index.entry(name)

    def indexed_hash(self, name: str) -> str | None:
        """The SHA-256 the index holds for a record (None: not indexed, or no index)."""
        entry = self.entry(name)
        return entry["sha256"] if entry else None

    def resolve(self, ref: str) -> Path:
        """A record by path, by name in the archive (``.ipynb`` optional), or by a unique name prefix.

        A record in S3 is fetched to a local read-only copy (:meth:`fetch`)."""
        if self.folder is not None:
            folder = self.folder
            for candidate in (Path(ref), folder / ref, folder / f"{ref}.ipynb"):
                if candidate.is_file():
                    return candidate
            # a ref with a slash is a path (not there), never a name prefix to glob for
            names = [p.name for p in folder.glob(f"{glob_escape(ref)}*.ipynb")] \
                if folder.is_dir() and "/" not in ref else []
        else:
            if Path(ref).is_file():
                return Path(ref)
            all_names = self.storage.names()
            exact = [n for n in (ref, f"{ref}.ipynb") if n in all_names]
            names = exact[:1] or [n for n in all_names if n.startswith(ref)]
        matches = sorted(names)
        if len(matches) == 1:
            return self.fetch(matches[0])
        if matches:
            raise LookupError(f"{ref!r} matches {len(matches)} records in {self.url}: "
                              + ", ".join(matches[:5]) + (" ..." if len(matches) > 5 else ""))
        raise LookupError(f"no record {ref!r} in {self.url}")

    def fetch(self, name: str, *, fresh: bool = False) -> Path:
        """A record's path: in a folder archive, the file itself; else a local read-only copy
        (``<state>/archives/<key>/records/NAME``), fetched once. ``fresh``: read the object again and
        replace the copy if it changed (what a page that says whether the record verifies must show:
        an object edited in the store since the first fetch)."""
        if self.folder is not None:
            return self.folder / name
        target = Path(self.local_dir) / "records" / name
        if fresh or not target.is_file():
            data = self.storage.read(name)
            if target.is_file() and target.read_bytes() == data:
                return target
            target.parent.mkdir(parents=True, exist_ok=True)
            replace_atomically(target, data, mode=0o444)
        return target

    # -- verify, reindex, adopt ----------------------------------------------------------------------
    def verify(self, anchors: Iterable[str] = ()) -> Verification:
        """Recompute every record's SHA-256 and the chain; name what changed outside the tool.

        ``anchors``: chain entries published outside the archive (each notification carries its
        record's ``entry_hash``; a prefix of at least :data:`ANCHOR_MIN_HEX` hex digits will do). The
        chain alone cannot tell that its newest entries were deleted together with their records, or
        that it was recomputed from scratch; an anchor that is no longer in it can. A pruned record
        (its tombstone in the index) is reported as pruned, not as removed.
        """
        report = Verification()
        if self.folder is not None and not self.shared:
            unindexed = {p.name for p in record_files(self.folder)}
        else:
            unindexed = set(self.storage.names())
        report.files = len(unindexed)
        for name in self.storage.temporaries():
            report.warnings.append(f"{name}: temporary file left by an interrupted write (not a record)")
        waiting = spool.entries(self.local_dir) if self.shared else []
        if waiting:
            report.warnings.append(f"{len(waiting)} record(s) in this machine's spool not sent yet: "
                                   f"`smartops archive sync` sends them")
        try:
            rows = self.index.rows()
            tombstones = self.index.tombstones()
        except (IndexMissing, IndexUnavailable) as e:
            why = "missing" if isinstance(e, IndexMissing) else one_line(e, typed=False)
            why = why if why.startswith(("missing", "unreadable")) else f"unreadable ({why})"
            report.problems.append(Problem("index-altered", self.index.problem_name, f"the index is {why}"))
            rows, tombstones = [], {}
        where = "folder" if self.folder is not None else "store"
        prev = GENESIS
        present = []
        for r in rows:
            name = r["name"]
            if r["prev_hash"] != prev:
                report.problems.append(Problem("index-altered", name, "chain broken before this entry: an index "
                                               "entry was removed or reordered"))
            if entry_hash(r["prev_hash"], name, r["sha256"], r) != r["entry_hash"]:
                report.problems.append(Problem("index-altered", name, "index entry altered: its fields do not "
                                               "match its hash"))
            prev = r["entry_hash"]
            unindexed.discard(r["path"])
            tomb = tombstones.get(name)
            if tomb is not None:
                report.pruned.append(name)
                if tomb["sha256"] != r["sha256"]:
                    report.problems.append(Problem("index-altered", name,
                                                   "tombstone does not match its entry's hash"))
                continue
            present.append(r)
        hashes = self.storage.hashes([r["path"] for r in present])
        for r in present:
            name, got = r["name"], hashes.get(r["path"])
            if isinstance(got, FileNotFoundError) or got is None:
                report.problems.append(Problem("removed", name, f"in the index, missing from the {where}"))
            elif isinstance(got, Exception):
                report.problems.append(Problem("unreadable", name, one_line(got, typed=False)))
            elif got[0] != r["sha256"]:
                report.problems.append(Problem("modified", name, f"SHA-256 {got[0][:12]}… differs from the "
                                               f"index's {r['sha256'][:12]}… (size {got[1]}, was {r['size']})"))
        report.entries, report.tip = len(rows), prev
        chain = [r["entry_hash"] for r in rows]
        for anchor in anchors:
            a = anchor.strip().lower()
            if not any(h.startswith(a) for h in chain):
                report.problems.append(Problem("anchor-missing", a[:16], "a chain entry published earlier is not "
                                               "in the chain: records were removed from its end, or the chain "
                                               "was rebuilt (reindex) since"))
        for name in sorted(unindexed):
            report.problems.append(Problem("added", name, f"in the {where}, not in the index (added outside the "
                                           "tool, or written while the index was unavailable)"))
        return report

    def reindex(self) -> Reindexed:
        """Rebuild the index from the records' ``metadata["smartops"]``, chained in started_at order.

        Trusts the records as they are now: run it when the index is lost, or after ``verify`` found
        drift that you have looked at. One transaction, so a concurrent reader sees old or new.
        The records are listed and read inside that transaction: a writer holds the same lock while it
        publishes a record, so every record seen is complete and none appears unindexed meanwhile.
        A SQLite index that is not a database is moved aside; one that is busy (``database is locked``)
        or unwritable raises :class:`IndexUnavailable` and is left alone.
        """
        out = Reindexed()
        described: list[tuple[str, str, dict[str, Any], dict[str, str]]] = []

        def describe_all():
            described.extend(self._describe_all(out))
            return [(row, words) for _, _, row, words in described]

        old = self.index.rebuild(describe_all, out)
        out.indexed = [name for _, name, _, _ in described]
        current = {row["name"]: row["sha256"] for _, _, row, _ in described}
        out.new = sorted(set(current) - set(old)) if out.previous is not None else []
        out.dropped = sorted(set(old) - set(current))
        out.changed = sorted(n for n in set(old) & set(current) if old[n] != current[n])
        return out

    def adopt(self) -> list[str]:
        """Index the records that have no entry (an upload whose row was never written), at the chain tip.

        Unlike :meth:`reindex`, the chain is kept: entries published before stay valid."""
        adopted = []
        with self.index.appending() as tx:
            for name in self.storage.names():
                if tx.has(name):
                    continue
                data = self.storage.read(name)
                try:
                    row, words = describe(_read_notebook(data), data, name)
                except Exception as e:  # not a SmartOps record: verify keeps naming it
                    log.warning("not adopted: %s (%s)", name, one_line(e, typed=False))
                    continue
                tx.append(row, words)
                self.plan_store().register(summary_of(data), name, tx=tx)
                adopted.append(name)
        return adopted

    def _describe_all(self, out: Reindexed) -> list[tuple[str, str, dict[str, Any], dict[str, str]]]:
        """Every record's index row, in chain order (started_at, then name); the others in ``skipped``."""
        described = []
        for name in self.storage.names():
            try:
                data = self.storage.read(name)
                row, words = describe(_read_notebook(data), data, name)
            except StorageUnavailable:
                raise
            except Exception as e:  # not JSON, not a notebook, not a SmartOps record
                out.skipped.append((name, one_line(e, typed=False)))
                continue
            described.append((row["started_at"], name, row, words))
        described.sort(key=lambda x: (x[0], x[1]))
        return described

    # -- moving and retention ------------------------------------------------------------------------
    def migrate(self, target: "Archive") -> Migrated:
        """Copy this archive into ``target`` (a folder into ``s3://`` + PostgreSQL): same bytes, same
        entries, same plans with who decided them, same checklist, lessons and tokens.

        This archive must verify and the target's index must be empty. Every entry is copied as it is
        (``prev_hash``, ``entry_hash``), so hashes and anchors published before stay valid, and the new
        archive's chain goes on from the old tip, which is recorded in both indexes' meta
        (``migrated_tip``). Objects are written before their entries, under the chain lock.

        The entries and plans are copied in one transaction, the tables beside them after it, then the
        target's meta says ``migrated_complete``. A migrate stopped before that is taken up by the same
        command again: a target whose meta says it holds this archive at this tip, not complete, gets the
        rest (each table row copied at most once). A complete one is refused like any target with
        entries: copying the tables again would bring back what was removed there since (a revoked token).
        """
        src, dst = self, target
        if src.url == dst.url and type(src.index) is type(dst.index):
            raise ArchiveRefused(f"--to {dst.url} is the archive itself")
        report = src.verify()
        if not report.ok:
            raise ArchiveRefused(f"{src.url} does not verify ({len(report.problems)} problem(s)): "
                                 f"run `smartops archive verify` and fix that first")
        out = Migrated(tip=report.tip)
        done = dst.index.meta()
        if (done.get("migrated_from") == src.url and done.get("migrated_tip") == report.tip
                and "migrated_complete" not in done):
            out.resumed = True
        else:
            src._copy_entries(dst, report.tip, out)
        out.tables = src._copy_tables(dst)
        with dst.index.appending() as tx:
            tx.set_meta("migrated_complete", now())
        with src.index.appending() as tx:
            tx.set_meta("migrated_to", f"{dst.url} (tip {report.tip})")
        return out

    def _copy_entries(self, dst: "Archive", tip: str, out: Migrated) -> None:
        """Every record, entry and tombstone, and the plans with their decisions, into ``dst``'s empty
        index in one transaction, ``migrated_from``/``migrated_tip`` with them."""
        src = self
        rows, tombs = src.index.rows(), src.index.tombstones()
        with dst.index.appending() as tx:
            if not tx.empty():
                raise ArchiveRefused(f"the target index {dst.index.label} is not empty: migrate into a new one")
            for r in rows:
                name = r["name"]
                if name in tombs:
                    tx.copy(r, {**{c: "" for c in TEXT_COLUMNS}, "record": name})  # its words went with it
                    tx.tombstone(name, r["sha256"], tombs[name]["why"])
                    out.tombstones += 1
                    continue
                data = src.storage.read(name)
                try:
                    dst.storage.put(name, data)
                except FileExistsError:
                    if dst.storage.hashes([name]).get(name) != (r["sha256"], len(data)):
                        raise ArchiveRefused(f"{dst.storage.where(name)} exists with other bytes") from None
                _, words = describe(_read_notebook(data), data, name)
                tx.copy(r, words)
                out.copied.append(name)
            for key, value in (("migrated_from", src.url), ("migrated_tip", tip), ("migrated_at", now())):
                tx.set_meta(key, value)
            plans = src.plan_store()
            # pending plans stay approvable, fates and who decided them kept
            dst.plan_store().insert(plans.rows(), decisions=plans.decision_rows(), tx=tx)

    def _copy_tables(self, dst: "Archive") -> dict[str, int]:
        """The blocks of tables beside the entries (checklist items, idempotency keys, lessons,
        tokens), row for row; a row the target already has is kept. Rows copied per table."""
        copied: dict[str, int] = {}
        for block, tables in TABLE_BLOCKS.items():
            with self.tables(block) as src:
                if src is None:
                    continue
                found = {t: [dict(r) for r in src.execute(f"SELECT * FROM {t}").fetchall()] for t in tables}
            with dst.tables(block, write=True) as con:
                for table, rows in found.items():
                    for r in rows:
                        cols = list(r)
                        con.execute(dst.sql(f"INSERT INTO {table} ({', '.join(cols)}) VALUES "
                                            f"({', '.join('?' * len(cols))}) ON CONFLICT DO NOTHING"),
                                    tuple(r.values()))
                    copied[table] = len(rows)
        return copied

    def prune(self, older_than: str, *, keep_confirmed: bool = False, dry_run: bool = False) -> Pruned:
        """Delete the record files started before ``older_than`` (``400d``), keeping their chain entries.

        Each pruned entry gets a tombstone (its hash, when, why), so ``verify`` reports it as pruned and
        the chain still verifies; records of an incident still open are never pruned. The tombstones
        are committed before any file is deleted: an interrupted prune leaves files that are merely
        kept longer.
        """
        out = Pruned(cutoff=parse_since(older_than))
        rows, tombs = self.index.rows(), self.index.tombstones()
        opened = open_incidents(rows)
        doomed = []
        for r in rows:
            if r["started_at"] >= out.cutoff or r["name"] in tombs:
                continue
            if r["incident_id"] in opened:
                out.kept_open.append(r["name"])
            elif keep_confirmed and r["confirmed"]:
                out.kept_confirmed.append(r["name"])
            else:
                doomed.append(r)
        out.pruned = [r["name"] for r in doomed]
        if dry_run or not doomed:
            return out
        why = f"retention: started before {out.cutoff} (--older-than {older_than})"
        with self.index.appending() as tx:
            for r in doomed:
                tx.tombstone(r["name"], r["sha256"], why)
        for r in doomed:
            try:
                self.storage.delete(r["path"])
            except FileNotFoundError:
                pass
        return out


def open_archive(archive: "str | os.PathLike | None" = None, index: str | None = None, *,
                 busy_timeout: float | None = None) -> Archive:
    """The archive named by the arguments, else the environment: where a command, ``serve``, a worker
    or the lab opens it, once. Raises :class:`ParameterError` (one line, exit 2) for a pair that
    cannot work: a scheme no storage is registered for, ``s3://`` without a PostgreSQL DSN, a bad DSN.

    A folder named here without an index is that folder with its SQLite index: ``$SMARTOPS_INDEX``
    belongs to the team archive of the environment (``archive migrate --archive incidents`` with
    both variables set reads the local folder, as it says)."""
    url = str(archive or os.environ.get(ARCHIVE_ENV) or DEFAULT_ARCHIVE)
    try:
        storage = open_storage(url)
    except ValueError as e:
        raise ParameterError(f"--archive: {e}") from None
    folder = storage.folder if isinstance(storage, FolderStorage) else None
    index = index or (SQLITE if archive is not None and folder is not None else os.environ.get(INDEX_ENV)) or SQLITE
    if index == SQLITE and folder is None:
        raise ParameterError(f"--archive {url} needs --index (or ${INDEX_ENV}) set to a PostgreSQL DSN: "
                             "SQLite works on one host only")
    if index == SQLITE:
        from .index_sqlite import SqliteIndex

        timeout = BUSY_TIMEOUT_S if busy_timeout is None else busy_timeout
        return Archive(str(folder), storage, SqliteIndex(folder, timeout), folder, folder)
    from .index_postgres import PostgresIndex, check_dsn

    try:
        check_dsn(index)
    except ValueError as e:
        raise ParameterError(str(e)) from None
    pg = PostgresIndex(index)
    key = hashlib.sha256(f"{storage.url}\n{pg.label}".encode()).hexdigest()[:16]
    return Archive(storage.url, storage, pg, folder, state_dir() / "archives" / key)

