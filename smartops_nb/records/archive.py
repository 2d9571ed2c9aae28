"""The archive: records, an index of them, searching it, and proving that nothing was changed.

An archive is a storage for the record files (:mod:`.storage`: a folder, or ``s3://bucket/prefix``)
and an index of them (:mod:`.index_sqlite` beside a folder, or :mod:`.index_postgres` for a team),
chosen from ``--archive`` and ``--index`` (:mod:`.location`). :func:`write_record` is the one
writer. A folder with its SQLite index writes as it always did: the notebook goes to an fsynced
temporary file, then under its record name, then the row is added in one ``BEGIN IMMEDIATE``
transaction, which also serialises reading and extending the chain tip. A shared archive spools
the record locally first (:mod:`.spool`), then, holding the index's chain lock, writes the object
and then its row: a crash between the two leaves an object that ``verify`` names and
``reindex --adopt`` (or the next ``sync``) adopts.

Rows form a hash chain in insertion order (``seq``), see :mod:`.entries`::

    entry_hash = sha256(json([prev_hash, name, sha256, runbook, severity, environment,
                              incident_id, status, started_at, finished_at]))

with ``prev_hash`` the previous row's ``entry_hash`` (64 zeros for the first) and ``sha256`` the
record file's. :func:`verify` recomputes both and names every record modified, removed, or added
outside the tool, and every pruned one (a tombstone keeps its entry: :func:`prune`);
:func:`reindex` rebuilds the index (and a fresh chain) from the records; :func:`migrate` copies a
folder archive into a shared one, entries and hashes unchanged.
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

from . import record, spool
# Names callers (notify, review, the CLI, the bench, the tests) have always taken from here: the
# entry's definition, the SQLite index's connection, the folder's files. Re-exported, not copied.
from .entries import (CHAINED, DEFAULT_LIMIT, GENESIS, MAX_OUTPUT_CHARS, TEXT_COLUMNS,  # noqa: F401
                      IndexMissing, IndexUnavailable, SearchSyntaxError, describe, entry_hash, outputs_text,
                      parse_since)
from .entries import now as _now
from .entries import public_row as _row  # noqa: F401
from .index_sqlite import (INDEX_NAME, SqliteIndex, _append, _close, _immediate, connect,  # noqa: F401
                           fts_query, index_path)
from .location import Archive, open_archive
from .storage import StorageUnavailable, file_sha256, record_files  # noqa: F401

log = logging.getLogger("smartops.archive")

#: Seconds a writer waits for the SQLite index's lock (read at each call: tests shorten it).
BUSY_TIMEOUT_S = 30
#: What a shared archive can fail with while a record is written: the record stays in the spool.
UNREACHABLE = (StorageUnavailable, IndexUnavailable, ValueError)

def location(archive: "str | os.PathLike | Archive | None", index: str | None = None) -> Archive:
    """The archive a caller names: a folder path (as before), an ``s3://`` URL, or an :class:`Archive`."""
    return open_archive(archive, index, busy_timeout=BUSY_TIMEOUT_S)


def plan_store(archive: "str | os.PathLike | Archive | None", index: str | None = None):
    """The archive's :class:`~smartops_nb.records.plans.PlanStore` (SQLite beside a folder, else its
    PostgreSQL index)."""
    return location(archive, index).plan_store()


def summary_of(data: bytes) -> dict[str, Any]:
    """A record file's ``metadata.smartops`` (empty when it has none), without nbformat's validation."""
    return json.loads(data).get("metadata", {}).get("smartops", {})


def read_summary(archive: "str | os.PathLike | Archive | None", name: str) -> dict[str, Any]:
    """A record's ``metadata.smartops`` read through the archive's storage (a folder or S3)."""
    return summary_of(location(archive).storage.read(name))


# -- writing ---------------------------------------------------------------------------------------
def write_record(nb, summary: dict[str, Any], archive: "Path | Archive") -> "Path | str":
    """Write the record and its index row; return the record's path (a folder) or URL (S3).

    A folder with its SQLite index: see :func:`_write_local`. A shared archive: the record is
    spooled locally, then the spool is sent in order (:func:`sync`, this record last). If the store
    or the index cannot take it, :class:`~smartops_nb.records.record.RecordWriteError` says so and
    names the spooled copy, which the next write or ``smartops archive sync`` sends.
    """
    import nbformat

    loc = location(archive)
    data = nbformat.writes(nb).encode()
    if not loc.shared:
        return _write_local(nb, data, summary, loc.folder, BUSY_TIMEOUT_S)
    try:
        # spooled and sent under the spool's lock: no other thread or command sends this entry meanwhile
        with spool.draining(loc.local_dir):
            entry = spool.put(loc.local_dir, data, record.record_name(summary))
            try:
                return _send_spool(loc)[entry.name]
            except UNREACHABLE as e:
                raise record.RecordWriteError(
                    f"cannot write to {loc.url}: {_one_line(e)}; record kept in the spool at {entry} "
                    f"(`smartops archive sync` sends it)", entry) from None
    except record.RecordWriteError:
        raise
    except OSError as e:  # this machine's own disk refused the spool: the fallback folder, as for a folder
        raise record._unsaved(data, summary, Path(loc.local_dir), e) from e


def _write_local(nb, data: bytes, summary: dict[str, Any], folder: Path, timeout: float) -> Path:
    """A folder archive with its SQLite index: the record file and its index row together.

    The file is complete or absent (staged, fsynced, then linked under its name). If the archive
    refuses the file, :class:`~smartops_nb.records.record.RecordWriteError` names the fallback copy and
    the index is untouched. If only the index refuses (locked too long, corrupt, full), the record
    is kept and the failure logged as an error: ``verify`` will name it, ``reindex`` adds it.
    """
    staged = record.stage(data, folder, summary)
    con: sqlite3.Connection | None = None
    problem: BaseException | None = None
    try:
        con = connect(folder, timeout=timeout)
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
    _register_plans(nb.metadata.get("smartops") or summary, path.name, folder)
    return path


def _register_plans(summary: dict[str, Any], name: str, folder: Path) -> None:
    """A folder archive's plans, beside it: the record is written whatever happens here; only
    approving from it would be lost, and the log says so."""
    if not summary.get("plans"):
        return
    try:
        location(folder).plan_store().register(summary, name)
    except (OSError, sqlite3.Error) as e:
        log.error("plans of %s not registered (%s): they cannot be approved; re-run the runbook", name, e)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def sync(archive: "Path | Archive") -> dict[str, str]:
    """Upload and index every spooled record of a shared archive, oldest first; spool entry → URL.

    Stops at the first failure (raising it), so the order and the chain stay intact; what was
    sent is gone from the spool.
    """

    loc = location(archive)
    with spool.draining(loc.local_dir):
        return _send_spool(loc)


def _send_spool(loc: Archive) -> dict[str, str]:
    """:func:`sync`'s work, the spool's lock held."""
    import nbformat

    sent: dict[str, str] = {}
    for entry in spool.entries(loc.local_dir):
        data = entry.read_bytes()
        nb = nbformat.reads(data.decode(), as_version=4)
        summary = nb.metadata["smartops"]
        with loc.index.appending() as tx:
            name = _place(loc, tx, data, summary)
            row, words = describe(nb, data, name)
            tx.append(row, words)
            loc.plan_store().register(summary, name, tx=tx)  # in the index's transaction
        entry.unlink()
        sent[entry.name] = loc.storage.where(name)
        log.info("record %s archived", sent[entry.name])
    return sent


def _place(loc: Archive, tx, data: bytes, summary: dict[str, Any]) -> str:
    """Write the object under a free record name (holding the chain lock); its name.

    An object already there with these very bytes and no entry was written by an earlier attempt
    that failed before its index row: it is adopted, not written twice.
    """
    digest = (hashlib.sha256(data).hexdigest(), len(data))
    for n in range(1000):
        name = record.record_name(summary, n)
        if tx.has(name):
            continue
        if not loc.storage.exists(name):
            break
        if loc.storage.hashes([name]).get(name) == digest:
            return name
    return loc.storage.put_new(data, summary, taken=tx.has)


# -- reading ---------------------------------------------------------------------------------------
def list_records(folder: "Path | Archive", *, limit: int = DEFAULT_LIMIT, **filters) -> list[dict[str, Any]]:
    """Index rows, newest first (``limit`` 0: all). Filters: runbook, severity, environment, cause,
    since, status, incident_id. Reads the index only, never a record."""
    return location(folder).index.list(limit, **filters)


def search(folder: "Path | Archive", text: str, *, limit: int = DEFAULT_LIMIT, **filters) -> list[dict[str, Any]]:
    """Records whose findings, diagnosis, outputs or parameters match ``text``, best first."""
    return location(folder).index.search(text, limit, **filters)


def resolve(folder: "Path | Archive", ref: str) -> Path:
    """A record by path, by name in the archive (``.ipynb`` optional), or by a unique name prefix.

    A record in S3 is fetched to a local read-only copy (:func:`fetch`)."""
    loc = location(folder)
    if loc.folder is not None:
        folder = loc.folder
        for candidate in (Path(ref), Path(folder) / ref, Path(folder) / f"{ref}.ipynb"):
            if candidate.is_file():
                return candidate
        # a ref with a slash is a path (not there), never a name prefix to glob for
        names = [p.name for p in Path(folder).glob(f"{glob_escape(ref)}*.ipynb")] \
            if Path(folder).is_dir() and "/" not in ref else []
    else:
        if Path(ref).is_file():
            return Path(ref)
        all_names = loc.storage.names()
        exact = [n for n in (ref, f"{ref}.ipynb") if n in all_names]
        names = exact[:1] or [n for n in all_names if n.startswith(ref)]
    matches = sorted(names)
    if len(matches) == 1:
        return fetch(loc, matches[0]) if loc.folder is None else loc.folder / matches[0]
    if matches:
        raise LookupError(f"{ref!r} matches {len(matches)} records in {loc.url}: "
                          + ", ".join(matches[:5]) + (" ..." if len(matches) > 5 else ""))
    raise LookupError(f"no record {ref!r} in {loc.url}")


def fetch(archive: "Path | Archive", name: str, *, fresh: bool = False) -> Path:
    """A local read-only copy of one record (``<state>/archives/<key>/records/NAME``), fetched once;
    ``fresh``: read the object again and replace the copy if it changed (what a page that says
    whether the record verifies must show: an object edited in the store since the first fetch)."""
    loc = location(archive)
    if loc.folder is not None:
        return loc.folder / name
    target = Path(loc.local_dir) / "records" / name
    if fresh or not target.is_file():
        data = loc.storage.read(name)
        if target.is_file() and target.read_bytes() == data:
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{name}.tmp")
        tmp.write_bytes(data)
        os.chmod(tmp, 0o444)
        os.replace(tmp, target)
    return target


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def indexed_entry(folder: "Path | Archive", name: str) -> dict[str, str] | None:
    """The index's ``sha256`` and ``entry_hash`` for a record (None: not indexed, or no index)."""
    return location(folder).index.entry(name)


def indexed_hash(folder: "Path | Archive", name: str) -> str | None:
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
    pruned: list[str] = field(default_factory=list)  # names whose tombstone keeps their entry

    @property
    def ok(self) -> bool:
        return not self.problems


ANCHOR_MIN_HEX = 12


def verify(folder: "Path | Archive", anchors: Iterable[str] = ()) -> Verification:
    """Recompute every record's SHA-256 and the chain; name what changed outside the tool.

    ``anchors``: chain entries published outside the archive (each notification carries its
    record's ``entry_hash``; a prefix of at least :data:`ANCHOR_MIN_HEX` hex digits will do). The
    chain alone cannot tell that its newest entries were deleted together with their records, or
    that it was recomputed from scratch; an anchor that is no longer in it can. A pruned record
    (its tombstone in the index) is reported as pruned, not as removed.
    """
    loc = location(folder)
    report = Verification()
    if loc.folder is not None and not loc.shared:
        unindexed = {p.name for p in record_files(loc.folder)}
    else:
        unindexed = set(loc.storage.names())
    report.files = len(unindexed)
    for name in loc.storage.temporaries():
        report.warnings.append(f"{name}: temporary file left by an interrupted write (not a record)")
    waiting = spool.entries(loc.local_dir) if loc.shared else []
    if waiting:
        report.warnings.append(f"{len(waiting)} record(s) in this machine's spool not sent yet: "
                               f"`smartops archive sync` sends them")
    try:
        rows = loc.index.rows()
        tombstones = loc.index.tombstones()
    except (IndexMissing, IndexUnavailable) as e:
        why = "missing" if isinstance(e, IndexMissing) else _one_line(e)
        why = why if why.startswith(("missing", "unreadable")) else f"unreadable ({why})"
        report.problems.append(Problem("index-altered", loc.index.problem_name, f"the index is {why}"))
        rows, tombstones = [], {}
    prev = GENESIS
    present = []
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
        tomb = tombstones.get(name)
        if tomb is not None:
            report.pruned.append(name)
            if tomb["sha256"] != r["sha256"]:
                report.problems.append(Problem("index-altered", name, "tombstone does not match its entry's hash"))
            continue
        present.append(r)
    hashes = loc.storage.hashes([r["path"] for r in present])
    for r in present:
        name, got = r["name"], hashes.get(r["path"])
        if isinstance(got, FileNotFoundError) or got is None:
            report.problems.append(Problem("removed", name, "in the index, missing from the "
                                           + ("folder" if loc.folder is not None else "store")))
        elif isinstance(got, Exception):
            report.problems.append(Problem("unreadable", name, _one_line(got)))
        elif got[0] != r["sha256"]:
            report.problems.append(Problem("modified", name, f"SHA-256 {got[0][:12]}… differs from the index's "
                                           f"{r['sha256'][:12]}… (size {got[1]}, was {r['size']})"))
    report.entries, report.tip = len(rows), prev
    chain = [r["entry_hash"] for r in rows]
    for anchor in anchors:
        a = anchor.strip().lower()
        if not any(h.startswith(a) for h in chain):
            report.problems.append(Problem("anchor-missing", a[:16], "a chain entry published earlier is not in "
                                           "the chain: records were removed from its end, or the chain was "
                                           "rebuilt (reindex) since"))
    for name in sorted(unindexed):
        report.problems.append(Problem("added", name, "in the " + ("folder" if loc.folder is not None else "store")
                                       + ", not in the index (added outside the tool, or written while the index "
                                       "was unavailable)"))
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


def reindex(folder: "Path | Archive") -> Reindexed:
    """Rebuild the index from the records' ``metadata["smartops"]``, chained in started_at order.

    Trusts the records as they are now: run it when the index is lost, or after ``verify`` found
    drift that you have looked at. One transaction, so a concurrent reader sees old or new.
    The records are listed and read inside that transaction: a writer holds the same lock while it
    publishes a record, so every record seen is complete and none appears unindexed meanwhile.
    A SQLite index that is not a database is moved aside; one that is busy (``database is locked``)
    or unwritable raises :class:`IndexUnavailable` and is left alone.
    """
    loc = location(folder)
    out = Reindexed()
    described: list[tuple[str, str, dict[str, Any], dict[str, str]]] = []

    def describe_all():
        described.extend(_describe_all(loc, out))
        return [(row, words) for _, _, row, words in described]

    old = loc.index.rebuild(describe_all, out)
    out.indexed = [name for _, name, _, _ in described]
    current = {row["name"]: row["sha256"] for _, _, row, _ in described}
    out.new = sorted(set(current) - set(old)) if out.previous is not None else []
    out.dropped = sorted(set(old) - set(current))
    out.changed = sorted(n for n in set(old) & set(current) if old[n] != current[n])
    return out


def adopt(folder: "Path | Archive") -> list[str]:
    """Index the records that have no entry (an upload whose row was never written), at the chain tip.

    Unlike :func:`reindex`, the chain is kept: entries published before stay valid."""
    import nbformat

    loc = location(folder)
    adopted = []
    with loc.index.appending() as tx:
        for name in loc.storage.names():
            if tx.has(name):
                continue
            data = loc.storage.read(name)
            try:
                row, words = describe(nbformat.reads(data.decode(), as_version=4), data, name)
            except Exception as e:  # not a SmartOps record: verify keeps naming it
                log.warning("not adopted: %s (%s)", name, _one_line(e))
                continue
            tx.append(row, words)
            loc.plan_store().register(summary_of(data), name, tx=tx)
            adopted.append(name)
    return adopted


def _describe_all(loc: Archive, out: Reindexed) -> list[tuple[str, str, dict[str, Any], dict[str, str]]]:
    """Every record's index row, in chain order (started_at, then name); the others in ``skipped``."""
    import nbformat

    if loc.folder is not None:
        names = [p.name for p in record_files(loc.folder)]  # module-level: tests watch it
    else:
        names = loc.storage.names()
    described = []
    for name in names:
        try:
            data = loc.storage.read(name)
            row, words = describe(nbformat.reads(data.decode(), as_version=4), data, name)
        except StorageUnavailable:
            raise
        except Exception as e:  # not JSON, not a notebook, not a SmartOps record
            out.skipped.append((name, str(e).splitlines()[0] if str(e) else type(e).__name__))
            continue
        described.append((row["started_at"], name, row, words))
    described.sort(key=lambda x: (x[0], x[1]))
    return described


# -- moving and retention ------------------------------------------------------------------------------
class ArchiveRefused(ValueError):
    """The command cannot be done on these archives as they are (one line; nothing was changed)."""


@dataclass
class Migrated:
    copied: list[str] = field(default_factory=list)
    tombstones: int = 0
    tip: str = GENESIS


def migrate(source: "Path | Archive", target: "Path | Archive") -> Migrated:
    """Copy an archive into another (a folder into ``s3://`` + PostgreSQL): same bytes, same entries.

    The source must verify and the target's index must be empty. Every entry is copied as it is
    (``prev_hash``, ``entry_hash``), so hashes and anchors published before stay valid, and the new
    archive's chain goes on from the old tip, which is recorded in both indexes' meta
    (``migrated_tip``). Objects are written before their entries, under the chain lock.
    """
    import nbformat

    src, dst = location(source), location(target)
    if src.url == dst.url and type(src.index) is type(dst.index):
        raise ArchiveRefused(f"--to {dst.url} is the archive itself")
    report = verify(src)
    if not report.ok:
        raise ArchiveRefused(f"{src.url} does not verify ({len(report.problems)} problem(s)): "
                             f"run `smartops archive verify` and fix that first")
    rows, tombs = src.index.rows(), src.index.tombstones()
    out = Migrated(tip=report.tip)
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
            _, words = describe(nbformat.reads(data.decode(), as_version=4), data, name)
            tx.copy(r, words)
            out.copied.append(name)
        for key, value in (("migrated_from", src.url), ("migrated_tip", report.tip), ("migrated_at", _now())):
            tx.set_meta(key, value)
        dst.plan_store().insert(src.plan_store().rows(), tx=tx)  # pending plans stay approvable, fates kept
    with src.index.appending() as tx:
        tx.set_meta("migrated_to", f"{dst.url} (tip {report.tip})")
    return out


@dataclass
class Pruned:
    cutoff: str
    pruned: list[str] = field(default_factory=list)
    kept_open: list[str] = field(default_factory=list)       # of an incident still open
    kept_confirmed: list[str] = field(default_factory=list)  # --keep-confirmed


def open_incidents(rows: list[dict[str, Any]]) -> set[str]:
    """Incident ids whose latest record is not a completed run that confirms nothing (not resolved yet)."""
    latest: dict[str, dict[str, Any]] = {}
    for r in rows:
        i = r["incident_id"]
        if i and (i not in latest or (r["started_at"], r["seq"]) > (latest[i]["started_at"], latest[i]["seq"])):
            latest[i] = r
    return {i for i, r in latest.items() if not (r["status"] == "completed" and not r["confirmed"])}


def prune(archive: "Path | Archive", older_than: str, *, keep_confirmed: bool = False,
          dry_run: bool = False) -> Pruned:
    """Delete the record files started before ``older_than`` (``400d``), keeping their chain entries.

    Each pruned entry gets a tombstone (its hash, when, why), so ``verify`` reports it as pruned and
    the chain still verifies; records of an incident still open are never pruned. The tombstones
    are committed before any file is deleted: an interrupted prune leaves files that are merely
    kept longer.
    """
    loc = location(archive)
    out = Pruned(cutoff=parse_since(older_than))
    rows, tombs = loc.index.rows(), loc.index.tombstones()
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
    with loc.index.appending() as tx:
        for r in doomed:
            tx.tombstone(r["name"], r["sha256"], why)
    for r in doomed:
        try:
            loc.storage.delete(r["path"])
        except FileNotFoundError:
            pass
    return out
