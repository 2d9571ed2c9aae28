"""``smartops archive``: list, search, show, export, verify and reindex incident records.

Exit codes: 0 done (``verify``: the archive is intact), 1 something is wrong (``verify`` found
drift, the index is missing or unreadable), 2 bad input (unknown record, bad ``--since`` or search
syntax). Heavy imports wait until a command runs, so ``smartops --help`` stays fast.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from smartops_nb.contract import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK

ARCHIVE_HELP = "archive folder (default $SMARTOPS_ARCHIVE or ./incidents)"


def register(subparsers, parser_class) -> None:
    a = subparsers.add_parser(
        "archive", help="list, search, show, export and verify incident records",
        description="The incident archive: a SQLite index beside the records (.index.sqlite) with a hash chain "
                    "over them. list/search read the index only; verify recomputes every hash.")
    sub = a.add_subparsers(dest="archive_command", required=True, parser_class=parser_class)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--archive", metavar="DIR", help=ARCHIVE_HELP)
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
    x.set_defaults(func=cmd_reindex)


def _folder(args) -> Path:
    from smartops_nb.records.record import archive_dir

    return archive_dir(args.archive)


def _fail(command: str, message: str, code: int) -> int:
    print(f"smartops archive {command}: {message}", file=sys.stderr)
    return code


def _filters(args) -> dict:
    return {k: getattr(args, k) for k in ("runbook", "severity", "environment", "cause", "since", "status")}


def _no_index(command: str, folder: Path) -> int:
    from smartops_nb.records import archive

    if archive.record_files(folder):
        return _fail(command, f"no index in {folder}: run `smartops archive reindex --archive {folder}`", EXIT_FAILED)
    print(f"no records in {folder}", file=sys.stderr)
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


def cmd_list(args) -> int:
    import sqlite3

    from smartops_nb.records import archive

    folder = _folder(args)
    try:
        rows = archive.list_records(folder, limit=args.limit, **_filters(args))
    except archive.IndexMissing:
        return _no_index("list", folder)
    except ValueError as e:
        return _fail("list", str(e), EXIT_BAD_INPUT)
    except sqlite3.Error as e:
        return _fail("list", f"the index {archive.index_path(folder)} is unreadable ({e}): run "
                             f"`smartops archive reindex`", EXIT_FAILED)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _table(rows, args.limit)
    return EXIT_OK


def cmd_search(args) -> int:
    import sqlite3

    from smartops_nb.records import archive

    folder = _folder(args)
    try:
        rows = archive.search(folder, " ".join(args.text), limit=args.limit, **_filters(args))
    except archive.IndexMissing:
        return _no_index("search", folder)
    except ValueError as e:  # SearchSyntaxError, a bad --since
        return _fail("search", str(e).splitlines()[0], EXIT_BAD_INPUT)
    except sqlite3.Error as e:
        return _fail("search", f"the index {archive.index_path(folder)} is unreadable ({e})", EXIT_FAILED)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _table(rows, args.limit, with_match=True)
    return EXIT_OK


def cmd_show(args) -> int:
    import nbformat

    from smartops_nb.records import archive

    folder = _folder(args)
    try:
        path = archive.resolve(folder, args.record)
        nb = nbformat.read(path, as_version=4)
    except LookupError as e:
        return _fail("show", str(e), EXIT_BAD_INPUT)
    except (OSError, ValueError) as e:
        return _fail("show", f"cannot read {args.record}: {e}", EXIT_FAILED)
    s = nb.metadata.get("smartops")
    if not isinstance(s, dict):
        return _fail("show", f"{path} has no metadata.smartops: not a SmartOps record", EXIT_FAILED)
    if args.json:
        print(json.dumps(s, indent=2, default=str))
        return EXIT_OK
    print(_render(s, path, archive.file_sha256(path), archive.indexed_hash(path.parent, path.name)))
    return EXIT_OK


def _render(s: dict, path: Path, sha: str, indexed: str | None) -> str:
    integrity = ("matches the index" if indexed == sha else "NOT in the index" if indexed is None
                 else "DIFFERS from the index: modified after it was written")
    diag = s.get("diagnosis") or {}
    lines = [
        f"{s.get('runbook')} — {s.get('title', '')} ({s.get('severity', '?')}, {s.get('environment', '?')})",
        f"record:    {path}",
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
        lines += [_plan_line(p, path.parent) for p in s["plans"]]
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


def _plan_line(p: dict, folder: Path) -> str:
    """A plan of the record with what became of it since (the plan store), and how to approve it."""
    from smartops_nb.records.plans import PENDING, PlanRefused, PlanStore
    from smartops_nb.records.render import plan_command

    try:
        now = PlanStore(folder).get(p["id"])
        state = now.state + (f" by {now.decided_by}" if now.decided_by else "") + (
            f": {now.reason}" if now.reason else "")
    except PlanRefused:
        now, state = None, "not in the plan store"
    approve = f" — approve: {plan_command(p)}" if now is not None and now.state == PENDING else ""
    return f"  {p['id']}: {p['action']} on {p['target']}, until {p['expires_at']}: {state}{approve}"


def cmd_export(args) -> int:
    from smartops_nb.records import archive

    folder = _folder(args)
    try:
        path = archive.resolve(folder, args.record)
    except LookupError as e:
        return _fail("export", str(e), EXIT_BAD_INPUT)
    out = Path(args.output) if args.output else Path(path.stem + ".html")
    try:
        archive.export_html(path, out)
    except Exception as e:  # an unreadable notebook, an unwritable output
        return _fail("export", f"cannot export {path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                     EXIT_FAILED)
    print(out)
    return EXIT_OK


def cmd_verify(args) -> int:
    from smartops_nb.records import archive

    folder = _folder(args)
    bad = [a for a in args.anchor if not re.fullmatch(rf"[0-9a-fA-F]{{{archive.ANCHOR_MIN_HEX},64}}", a.strip())]
    if bad:
        return _fail("verify", f"--anchor {bad[0]!r} is not a chain entry ({archive.ANCHOR_MIN_HEX} to 64 hex digits)",
                     EXIT_BAD_INPUT)
    report = archive.verify(folder, args.anchor)
    if args.json:
        print(json.dumps({"ok": report.ok, "entries": report.entries, "files": report.files, "tip": report.tip,
                          "problems": [vars(p) for p in report.problems], "warnings": report.warnings}, indent=2))
        return EXIT_OK if report.ok else EXIT_FAILED
    for p in report.problems:
        print(f"{p.kind.upper():<13} {p.name}: {p.detail}")
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    verdict = "intact" if report.ok else f"{len(report.problems)} problem(s)"
    print(f"{folder}: {report.entries} indexed, {report.files} record files, chain tip {report.tip[:16]}…: {verdict}")
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_reindex(args) -> int:
    from smartops_nb.records import archive

    folder = _folder(args)
    if not folder.is_dir():
        return _fail("reindex", f"no archive folder {folder}", EXIT_BAD_INPUT)
    try:
        r = archive.reindex(folder)
    except archive.IndexUnavailable as e:
        return _fail("reindex", str(e), EXIT_FAILED)
    before = "no index before" if r.previous is None else f"{r.previous} entries before"
    print(f"reindexed {len(r.indexed)} records into {archive.index_path(folder)} ({before}); the hash chain was "
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
