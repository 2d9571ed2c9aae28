"""``smartops archive``: list, search, show, export, verify, reindex, sync, migrate and prune records.

Every command takes ``--archive`` (a folder or ``s3://bucket/prefix``) and ``--index`` (``sqlite`` or a
PostgreSQL DSN). Exit codes: 0 done (``verify``: the archive is intact), 1 something is wrong
(``verify`` found drift, the index is missing or unreadable, the store or the index is unreachable),
2 bad input (unknown record, bad ``--since`` or search syntax, ``s3://`` without a DSN, a bad DSN).
Heavy imports wait until a command runs, so ``smartops --help`` stays fast.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from smartops_nb.contract import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from smartops_nb.support.reasons import one_line

ARCHIVE_HELP = "archive: a folder or s3://bucket/prefix (default $SMARTOPS_ARCHIVE or ./incidents)"
INDEX_HELP = ("its index: sqlite (beside a folder; the default) or a PostgreSQL DSN, required for s3:// "
              "(default $SMARTOPS_INDEX)")


def add_location(parser) -> None:
    """``--archive`` and ``--index``, as every command that reads or writes records takes them."""
    parser.add_argument("--archive", metavar="DIR|s3://BUCKET/PREFIX", help=ARCHIVE_HELP)
    parser.add_argument("--index", metavar="sqlite|DSN", help=INDEX_HELP)


def register(subparsers, parser_class) -> None:
    a = subparsers.add_parser(
        "archive", help="list, search, show, export and verify incident records",
        description="The incident archive: records in a folder (or s3://bucket/prefix) and an index with a hash "
                    "chain over them (.index.sqlite beside a folder, or PostgreSQL for a team). list/search read "
                    "the index only; verify recomputes every hash.")
    sub = a.add_subparsers(dest="archive_command", required=True, parser_class=parser_class)
    common = argparse.ArgumentParser(add_help=False)
    add_location(common)
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("--runbook", metavar="ID", help="only this runbook")
    filters.add_argument("--severity", metavar="P1", help="only this severity (P1..P4)")
    filters.add_argument("--environment", metavar="E", help="only this environment")
    filters.add_argument("--cause", metavar="CODE", help="only records whose diagnosis has this cause code")
    filters.add_argument("--since", metavar="WHEN", help="started within 30m, 24h, 7d, 2w, or since an ISO time")
    filters.add_argument("--status", metavar="S", help="only this status (completed, failed)")
    filters.add_argument("--limit", type=int, default=50, metavar="N", help="at most N records (50; 0: all)")
    filters.add_argument("--json", action="store_true", help="machine-readable output")

    x = sub.add_parser("list", parents=[common, filters], help="records newest first, from the index",
                       description="List records newest first. Reads the index only (fast on 10,000 records).")
    x.set_defaults(func=cmd_list)
    x = sub.add_parser("search", parents=[common, filters], help="full-text search of findings, outputs, parameters",
                       description="Find records by words in their findings, diagnosis, cell outputs and parameters "
                                   "(SQLite FTS5: words, \"a phrase\", AND/OR/NOT, prefix*). Best match first.")
    x.add_argument("text", nargs="+", help="search words (joined by spaces)")
    x.set_defaults(func=cmd_search)
    x = sub.add_parser("show", parents=[common], help="print a record's summary",
                       description="Print a record's summary: diagnosis, findings, actions, timeline, and whether "
                                   "its file still matches the index.")
    x.add_argument("record", help="record path, name, or a unique name prefix")
    x.add_argument("--json", action="store_true", help="the summary (metadata.smartops) as JSON")
    x.set_defaults(func=cmd_show)
    x = sub.add_parser("export", parents=[common], help="write a record as standalone HTML",
                       description="Write a record as one standalone HTML file (nbconvert; plots embedded), "
                                   "scrubbed of secrets.")
    x.add_argument("record", help="record path, name, or a unique name prefix")
    x.add_argument("--html", action="store_true", required=True, help="HTML output (the only format)")
    x.add_argument("-o", "--output", metavar="FILE", help="output file (default ./RECORD.html)")
    x.set_defaults(func=cmd_export)
    x = sub.add_parser("verify", parents=[common], help="recompute every hash and the chain",
                       description="Recompute every record's SHA-256 and the index's hash chain; name each record "
                                   "modified, removed, or added outside the tool. Exit 1 if anything is wrong.")
    x.add_argument("--json", action="store_true", help="machine-readable output")
    x.add_argument("--anchor", action="append", default=[], metavar="HASH",
                   help="a chain entry published outside the archive (each notification carries its record's; "
                        "12+ hex digits), which must still be in the chain; repeatable")
    x.set_defaults(func=cmd_verify)
    x = sub.add_parser("reindex", parents=[common], help="rebuild the index from the notebooks",
                       description="Rebuild the index (and a fresh hash chain, in started_at order) from the "
                                   "notebooks' metadata. Use when the index is lost, or after checking what "
                                   "verify reported: the records as they are now become the reference.")
    x.add_argument("--adopt", action="store_true",
                   help="keep the chain and only add records that have no entry (an upload whose index row was "
                        "never written) at its tip")
    x.set_defaults(func=cmd_reindex)
    x = sub.add_parser("sync", parents=[common], help="send the records spooled while the archive was unreachable",
                       description="Upload and index, oldest first, the records this machine kept in its spool "
                                   "because the store or the index was unreachable when a run finished (every "
                                   "later successful write does this first, too). Exit 1 if they cannot be sent.")
    x.set_defaults(func=cmd_sync)
    x = sub.add_parser("migrate", parents=[common], help="copy this archive into another (s3:// + PostgreSQL)",
                       description="Copy every record and index entry into a new archive: same bytes, same hashes, "
                                   "the chain going on from the old tip (recorded in both indexes). The source "
                                   "must verify; the target's index must be empty.")
    x.add_argument("--to", required=True, metavar="DIR|s3://BUCKET/PREFIX", help="the new archive")
    x.add_argument("--to-index", metavar="sqlite|DSN", help="the new archive's index (a PostgreSQL DSN for s3://)")
    x.set_defaults(func=cmd_migrate)
    x = sub.add_parser("prune", parents=[common], help="delete old record files, keeping their chain entries",
                       description="Delete the record files started before --older-than; their index entries stay "
                                   "as tombstones (hash, when, why), so verify still passes and lists them as "
                                   "pruned. Records of an incident that is still open are never pruned.")
    x.add_argument("--older-than", required=True, metavar="AGE", help="e.g. 400d, 60w")
    x.add_argument("--keep-confirmed", action="store_true", help="keep records whose diagnosis was confirmed")
    x.add_argument("--dry-run", action="store_true", help="say what would be pruned; change nothing")
    x.set_defaults(func=cmd_prune)


def _fail(command: str, message: str, code: int) -> int:
    print(f"smartops archive {command}: {message}", file=sys.stderr)
    return code


class _Exit(Exception):
    def __init__(self, code: int):
        self.code = code


def _location(command: str, args, archive=None, index=None):
    """The archive the options name; a pair that cannot work exits 2 with one line."""
    from smartops_nb.contract import ParameterError
    from smartops_nb.records.archive import open_archive

    try:
        return open_archive(archive or args.archive, index or args.index)
    except ParameterError as e:
        raise _Exit(_fail(command, str(e), EXIT_BAD_INPUT)) from None


def _unreachable(command: str, e: BaseException) -> int:
    """The store or the index cannot answer: one line naming it, exit 1 (2 if the DSN was refused)."""
    from smartops_nb.records.index_postgres import IndexRefused

    message = one_line(e, typed=False)
    return _fail(command, message, EXIT_BAD_INPUT if isinstance(e, IndexRefused) else EXIT_FAILED)


def _remote_errors():
    from smartops_nb.records.entries import IndexUnavailable
    from smartops_nb.records.index_postgres import IndexRefused
    from smartops_nb.records.storage import StorageUnavailable

    return (IndexUnavailable, IndexRefused, StorageUnavailable)


def _guarded(func):
    """Run a command; its location errors and an unreachable store or index become one line."""
    import functools

    @functools.wraps(func)
    def run(args) -> int:
        command = args.archive_command
        try:
            return func(args)
        except _Exit as e:
            return e.code
        except _remote_errors() as e:
            return _unreachable(command, e)
    return run


def _filters(args) -> dict:
    return {k: getattr(args, k) for k in ("runbook", "severity", "environment", "cause", "since", "status")}


def _no_index(command: str, loc) -> int:
    if loc.storage.names():
        return _fail(command, f"no index in {loc.index.label}: run `smartops archive reindex --archive {loc.url}`",
                     EXIT_FAILED)
    print(f"no records in {loc.url}", file=sys.stderr)
    return EXIT_OK


def _table(rows: list[dict], limit: int, with_match: bool = False) -> None:
    for r in rows:
        diag = ("confirmed: " + ", ".join(r["causes"])) if r["confirmed"] else "not confirmed"
        print(f"{r['started_at']:<20}  {r['severity']:<3} {r['runbook']:<18} {r['environment']:<10} "
              f"{r['status']:<9}  {diag:<40}  {r['name']}")
        if with_match:
            print(f"    {' '.join(r['match'].split())}")
    if limit and len(rows) == limit:
        print(f"(the first {limit}; --limit 0 for all)", file=sys.stderr)


@_guarded
def cmd_list(args) -> int:
    import sqlite3

    from smartops_nb.records.entries import IndexMissing

    loc = _location("list", args)
    try:
        rows = loc.list(limit=args.limit, **_filters(args))
    except IndexMissing:
        return _no_index("list", loc)
    except ValueError as e:
        return _fail("list", str(e), EXIT_BAD_INPUT)
    except sqlite3.Error as e:
        return _fail("list", f"the index {loc.index.label} is unreadable ({e}): run "
                             f"`smartops archive reindex`", EXIT_FAILED)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _table(rows, args.limit)
    return EXIT_OK


@_guarded
def cmd_search(args) -> int:
    import sqlite3

    from smartops_nb.records.entries import IndexMissing

    loc = _location("search", args)
    try:
        rows = loc.search(" ".join(args.text), limit=args.limit, **_filters(args))
    except IndexMissing:
        return _no_index("search", loc)
    except ValueError as e:  # SearchSyntaxError, a bad --since
        return _fail("search", one_line(e, typed=False), EXIT_BAD_INPUT)
    except sqlite3.Error as e:
        return _fail("search", f"the index {loc.index.label} is unreadable ({e})", EXIT_FAILED)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _table(rows, args.limit, with_match=True)
    return EXIT_OK


@_guarded
def cmd_show(args) -> int:
    from smartops_nb.records.storage import file_sha256

    loc = _location("show", args)
    try:
        path = loc.resolve(args.record)
        nb = json.loads(path.read_bytes())  # only its metadata is shown: no nbformat (its import: ~1.6 s)
    except LookupError as e:
        return _fail("show", str(e), EXIT_BAD_INPUT)
    except (OSError, ValueError) as e:
        return _fail("show", f"cannot read {args.record}: {e}", EXIT_FAILED)
    s = (nb.get("metadata") or {}).get("smartops") if isinstance(nb, dict) else None
    if not isinstance(s, dict):
        return _fail("show", f"{path} has no metadata.smartops: not a SmartOps record", EXIT_FAILED)
    if args.json:
        print(json.dumps(s, indent=2, default=str))
        return EXIT_OK
    shown = path if loc.folder is not None else loc.storage.where(path.name)
    own = loc if loc.shared else _location("show", args, archive=path.parent, index="sqlite")  # the file's folder
    print(_render(s, path, file_sha256(path), own.indexed_hash(path.name), shown=shown, plans=own.plan_store()))
    return EXIT_OK


def _render(s: dict, path: Path, sha: str, indexed: str | None, *, plans, shown=None) -> str:
    integrity = ("matches the index" if indexed == sha else "NOT in the index" if indexed is None
                 else "DIFFERS from the index: modified after it was written")
    diag = s.get("diagnosis") or {}
    lines = [
        f"{s.get('runbook')} — {s.get('title', '')} ({s.get('severity', '?')}, {s.get('environment', '?')})",
        f"record:    {shown or path}",
        *([f"page:      {_page(path.name)}"] if _page(path.name) else []),
        f"sha256:    {sha} ({integrity})",
        f"incident:  {s.get('incident_id', '')}   operator: {s.get('operator', '')}   mode: {s.get('mode', '')}",
        f"detected:  {s.get('detected_at')}   started: {s.get('started_at')}   finished: {s.get('finished_at')}",
        f"status:    {s.get('status')}" + (f" ({s['error']})" if s.get("error") else ""),
        "",
        "Diagnosis: " + ("CONFIRMED — causes: " + ", ".join(diag.get("causes", [])) if diag.get("confirmed")
                         else "not confirmed"),
        f"  {diag.get('summary', '')}",
        "",
        "Findings:",
    ]
    lines += [f"  [{f.get('status', '?'):<8}] {f.get('check', '')}: {f.get('summary', '')}"
              for f in s.get("findings", [])] or ["  (none)"]
    lines += ["", "Actions:"]
    lines += [f"  {a.get('action')} on {a.get('target')}: {a.get('mode')} ({a.get('at', '')}, "
              f"{a.get('operator', '')}) — {a.get('reason', '')}" for a in s.get("actions", [])] or ["  (none)"]
    if s.get("plans"):
        lines += ["", "Plans:"]
        lines += [_plan_line(p, plans) for p in s["plans"]]
    lines += ["", "Timeline:"]
    lines += [f"  {t.get('at', ''):<20}  {t.get('event', '')}" for t in s.get("timeline", [])] or ["  (none)"]
    return "\n".join(lines)


def _page(name: str) -> str:
    """The record's page on `smartops serve` when its public URL is known ($SMARTOPS_PUBLIC_URL)."""
    import os
    from urllib.parse import quote

    from smartops_nb.contract import PUBLIC_URL_ENV

    base = os.environ.get(PUBLIC_URL_ENV, "").rstrip("/")
    return f"{base}/records/{quote(name, safe='')}" if base else ""


def _plan_line(p: dict, store) -> str:
    """A plan of the record with what became of it since (the plan store), and how to approve it."""
    from smartops_nb.records.plans import PENDING, PlanRefused
    from smartops_nb.records.render import plan_command

    try:
        now = store.get(p["id"])
        state = now.state + (f" by {now.decided_by}" if now.decided_by else "") + (
            f": {now.reason}" if now.reason else "")
    except PlanRefused:
        now, state = None, "not in the plan store"
    approve = f" — approve: {plan_command(p)}" if now is not None and now.state == PENDING else ""
    return f"  {p['id']}: {p['action']} on {p['target']}, until {p['expires_at']}: {state}{approve}"


@_guarded
def cmd_export(args) -> int:
    from smartops_nb.records.render import export_html

    loc = _location("export", args)
    try:
        path = loc.resolve(args.record)
    except LookupError as e:
        return _fail("export", str(e), EXIT_BAD_INPUT)
    out = Path(args.output) if args.output else Path(path.stem + ".html")
    try:
        export_html(path, out)
    except Exception as e:  # an unreadable notebook, an unwritable output
        return _fail("export", f"cannot export {path}: {one_line(e)}",
                     EXIT_FAILED)
    print(out)
    return EXIT_OK


def _print_report(report, url: str, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"ok": report.ok, "entries": report.entries, "files": report.files, "tip": report.tip,
                          "pruned": report.pruned, "problems": [vars(p) for p in report.problems],
                          "warnings": report.warnings}, indent=2))
        return EXIT_OK if report.ok else EXIT_FAILED
    for p in report.problems:
        print(f"{p.kind.upper():<13} {p.name}: {p.detail}")
    for name in report.pruned:
        print(f"{'PRUNED':<13} {name}: file deleted by retention, its chain entry kept (tombstone)")
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    verdict = "intact" if report.ok else f"{len(report.problems)} problem(s)"
    pruned = f", {len(report.pruned)} pruned" if report.pruned else ""
    print(f"{url}: {report.entries} indexed, {report.files} record files{pruned}, chain tip {report.tip[:16]}…: "
          f"{verdict}")
    return EXIT_OK if report.ok else EXIT_FAILED


@_guarded
def cmd_verify(args) -> int:
    from smartops_nb.records.archive import ANCHOR_MIN_HEX

    bad = [a for a in args.anchor if not re.fullmatch(rf"[0-9a-fA-F]{{{ANCHOR_MIN_HEX},64}}", a.strip())]
    if bad:
        return _fail("verify", f"--anchor {bad[0]!r} is not a chain entry ({ANCHOR_MIN_HEX} to 64 hex digits)",
                     EXIT_BAD_INPUT)
    loc = _location("verify", args)
    return _print_report(loc.verify(args.anchor), loc.url, args.json)


@_guarded
def cmd_reindex(args) -> int:
    from smartops_nb.records.entries import IndexUnavailable

    loc = _location("reindex", args)
    if loc.folder is not None and not loc.folder.is_dir():
        return _fail("reindex", f"no archive folder {loc.folder}", EXIT_BAD_INPUT)
    if args.adopt:
        adopted = loc.adopt()
        print(f"adopted {len(adopted)} record(s) into {loc.index.label} at the chain tip"
              + "".join(f"\n  {n}" for n in adopted))
        return EXIT_OK
    try:
        r = loc.reindex()
    except IndexUnavailable as e:
        return _fail("reindex", str(e), EXIT_FAILED)
    before = "no index before" if r.previous is None else f"{r.previous} entries before"
    print(f"reindexed {len(r.indexed)} records into {loc.index.label} ({before}); the hash chain was "
          f"rebuilt from the files as they are now")
    if r.moved_aside:
        print(f"  the old index was unreadable and was moved to {r.moved_aside}")
    for label, names in (("new in the index", r.new), ("dropped (file gone)", r.dropped),
                         ("hash changed (file modified)", r.changed)):
        if names:
            print(f"  {label}: {', '.join(names)}")
    for name, why in r.skipped:
        print(f"  skipped {name}: {why}")
    return EXIT_OK


@_guarded
def cmd_sync(args) -> int:
    from smartops_nb.records import spool

    loc = _location("sync", args)
    if not loc.shared:
        print(f"{loc.url} is a local archive: records are written straight into it (nothing to sync)")
        return EXIT_OK
    waiting = len(spool.entries(loc.local_dir))
    sent = loc.sync()
    for url in sent.values():
        print(url)
    print(f"sent {len(sent)} of {waiting} spooled record(s) to {loc.url}", file=sys.stderr)
    return EXIT_OK


@_guarded
def cmd_migrate(args) -> int:
    from smartops_nb.records.archive import ArchiveRefused

    source = _location("migrate", args)
    target = _location("migrate", args, archive=args.to, index=args.to_index or "sqlite")
    try:
        m = source.migrate(target)
    except ArchiveRefused as e:
        return _fail("migrate", str(e), EXIT_FAILED if "does not verify" in str(e) else EXIT_BAD_INPUT)
    if m.resumed:
        print(f"resumed: an earlier migrate copied the records of {source.url} (chain tip {m.tip[:16]}…) to "
              f"{target.url}; the tables beside them are copied now")
    else:
        print(f"migrated {len(m.copied)} records ({m.tombstones} tombstones) from {source.url} to {target.url}; "
              f"chain tip {m.tip[:16]}… recorded as migrated_tip")
    return _print_report(target.verify(), target.url, False)


@_guarded
def cmd_prune(args) -> int:
    loc = _location("prune", args)
    try:
        p = loc.prune(args.older_than, keep_confirmed=args.keep_confirmed, dry_run=args.dry_run)
    except ValueError as e:
        return _fail("prune", str(e).replace("--since", "--older-than"), EXIT_BAD_INPUT)
    verb = "would prune" if args.dry_run else "pruned"
    for name in p.pruned:
        print(f"{verb}: {name}")
    for name in p.kept_open:
        print(f"kept (incident still open): {name}")
    for name in p.kept_confirmed:
        print(f"kept (confirmed): {name}")
    print(f"{verb} {len(p.pruned)} record(s) started before {p.cutoff}; their chain entries stay as tombstones",
          file=sys.stderr)
    return EXIT_OK
