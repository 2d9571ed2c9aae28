"""What one index entry is, whichever index holds it: its columns, its hash, the list filters.

Both indexes (:mod:`.index_sqlite`, :mod:`.index_postgres`) store the same rows and chain them the
same way::

    entry_hash = sha256(json([prev_hash, name, sha256, runbook, severity, environment,
                              incident_id, status, started_at, finished_at]))

so a record's ``entry_hash`` is the same whichever index it is in (``archive migrate`` relies on it).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from typing import Any

GENESIS = "0" * 64
#: Summary fields that the chain covers, besides the record's name and SHA-256.
CHAINED = ("runbook", "severity", "environment", "incident_id", "status", "started_at", "finished_at")
#: Cap on the cell-output text indexed per record (a runbook that prints a whole log stays searchable).
MAX_OUTPUT_CHARS = 200_000
DEFAULT_LIMIT = 50
#: The columns list and search return, in this order.
LIST_COLUMNS = ("name", "path", "sha256", "runbook", "title", "severity", "environment", "incident_id", "status",
                "confirmed", "causes", "diagnosis", "detected_at", "started_at", "finished_at", "mode", "operator",
                "actions_executed", "findings")
#: Every column of an index row, in the order both schemas declare them (``seq`` aside).
ROW_COLUMNS = ("name", "path", "sha256", "size", "prev_hash", "entry_hash", "runbook", "title", "severity",
               "environment", "incident_id", "status", "confirmed", "causes", "diagnosis", "detected_at",
               "started_at", "finished_at", "mode", "operator", "actions_executed", "findings", "indexed_at")
#: The full-text columns of a record, as :func:`describe` returns them.
TEXT_COLUMNS = ("record", "findings", "diagnosis", "outputs", "parameters")
FILTERS = ("runbook", "severity", "environment", "cause", "since", "status", "incident_id")


class IndexMissing(LookupError):
    """There is no index yet (nothing was ever written to this archive)."""


class IndexUnavailable(RuntimeError):
    """The index cannot be read or written now (locked, unreachable, damaged): a one-line reason."""


class SearchSyntaxError(ValueError):
    pass


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


NEW, RECHECK, REPEAT = "new", "recheck", "repeat"   # what claim_episode found


def episode_verdict(last_run_at: str | None, recheck_after: float, at: str) -> str:
    """NEW when the episode was never claimed; RECHECK when its last run is ``recheck_after`` s old or
    more (``recheck_after`` > 0); else REPEAT. Times are ISO 8601 UTC, as :func:`now` writes them."""
    from smartops_nb.params import parse_time

    if last_run_at is None:
        return NEW
    if recheck_after > 0 and (parse_time(at) - parse_time(last_run_at)).total_seconds() >= recheck_after:
        return RECHECK
    return REPEAT


def claim_in(con, ph: str, incident_id: str, kind: str, recheck_after: float) -> str:
    """One episode claim on an open connection (either index's, inside its lock): read, decide, write.
    ``ph``: the driver's placeholder (``?`` or ``%s``); rows are read by column name."""
    at = now()
    row = con.execute(f"SELECT run_at FROM alert_episodes WHERE incident_id = {ph} AND kind = {ph}",
                      (incident_id, kind)).fetchone()
    verdict = episode_verdict(row["run_at"] if row else None, recheck_after, at)
    if verdict == NEW:
        con.execute(f"INSERT INTO alert_episodes VALUES ({ph}, {ph}, {ph}, {ph}, 0)", (incident_id, kind, at, at))
    else:
        con.execute(f"UPDATE alert_episodes SET repeats = repeats + 1, run_at = CASE WHEN {ph} THEN {ph} "
                    f"ELSE run_at END WHERE incident_id = {ph} AND kind = {ph}",
                    (verdict == RECHECK, at, incident_id, kind))
    return verdict


def now() -> str:
    from smartops_nb.params import iso, utcnow

    return iso(utcnow())


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


def where(clauses: list[str], args: list[Any], ph: str = "?", runbook=None, severity=None, environment=None,
          cause=None, since=None, status=None, incident_id=None) -> tuple[str, list[Any]]:
    """A WHERE clause for the list filters (after ``clauses`` already given); ``ph``: the driver's placeholder."""
    clauses, args = list(clauses), list(args)
    for col, value in (("runbook", runbook), ("severity", severity), ("environment", environment),
                       ("status", status), ("incident_id", incident_id)):
        if value:
            clauses.append(f"r.{col} = {ph}")
            args.append(value)
    if cause:
        clauses.append(f"r.seq IN (SELECT seq FROM record_causes WHERE cause = {ph})")
        args.append(cause)
    if since:
        clauses.append(f"r.started_at >= {ph}")
        args.append(parse_since(since))
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


def chained(prev: str, row: dict[str, Any]) -> dict[str, Any]:
    """``row`` (from :func:`describe`) as the entry after ``prev``: with its chain fields and index time."""
    return {**row, "prev_hash": prev, "entry_hash": entry_hash(prev, row["name"], row["sha256"], row),
            "indexed_at": now()}


def public_row(r: Any) -> dict[str, Any]:
    """An index row as list/search return it (from the index, or :func:`describe`'s row)."""
    d = dict(r)
    d["confirmed"] = bool(d["confirmed"])
    d["causes"] = d["causes"].split()
    executed = d["actions_executed"]
    d["actions_executed"] = json.loads(executed) if executed and executed != "[]" else []
    return d




class Appender:
    """Extends the chain inside one locked transaction (see :meth:`Index.appending`)."""

    def append(self, row: dict[str, Any], words: dict[str, str]) -> dict[str, Any]:
        """Add ``row`` (from :func:`describe`) at the tip; return it with its chain fields."""
        raise NotImplementedError

    def copy(self, row: dict[str, Any], words: dict[str, str]) -> None:
        """Add an entry as it is (chain fields included): ``archive migrate``."""
        raise NotImplementedError

    def has(self, name: str) -> bool:
        raise NotImplementedError

    def empty(self) -> bool:
        """No entry yet (``archive migrate`` only fills an empty index)."""
        raise NotImplementedError

    def tombstone(self, name: str, sha256: str, why: str) -> None:
        raise NotImplementedError

    def set_meta(self, key: str, value: str) -> None:
        raise NotImplementedError


#: Tables an index keeps beside the records' entries, by block (made on first use; copied by
#: ``archive migrate``): the post-incident checklist's (:mod:`.checklist_store`) and the personal tokens
#: (:mod:`smartops_nb.people.tokens`).
TABLE_BLOCKS = {"postincident": ("postincident_items", "postincident_keys", "lessons"), "people": ("tokens",)}


class Index:
    """Where the rows and the hash chain live: :class:`~.index_sqlite.SqliteIndex` beside a folder, or
    :class:`~.index_postgres.PostgresIndex` shared by a team. Reads raise :class:`IndexMissing` when
    nothing was ever indexed and :class:`IndexUnavailable` when the index cannot answer."""

    label = "index"         # where it is, for messages (never a password)
    problem_name = "index"  # how verify names the index itself

    def rows(self) -> list[dict[str, Any]]:
        """Every entry, in chain order."""
        raise NotImplementedError

    def list(self, limit: int, **filters) -> list[dict[str, Any]]:
        raise NotImplementedError

    def search(self, text: str, limit: int, **filters) -> list[dict[str, Any]]:
        raise NotImplementedError

    def entry(self, name: str) -> dict[str, str] | None:
        """``sha256`` and ``entry_hash`` of one record (None: not indexed, or no index)."""
        raise NotImplementedError

    def tombstones(self) -> dict[str, dict[str, Any]]:
        """Pruned records by name: ``sha256``, ``pruned_at``, ``why``."""
        raise NotImplementedError

    def meta(self) -> dict[str, str]:
        raise NotImplementedError

    def appending(self):
        """A context manager: the chain tip locked for this writer, committed on exit."""
        raise NotImplementedError

    # alert episodes: smartops serve's idempotent intake (see smartops_nb.server.intake)
    def claim_episode(self, incident_id: str, kind: str, recheck_after: float = 0.0) -> str:
        """Note a notification of one alert episode and kind (``firing``/``resolved``), atomically across
        every writer of this index: :data:`NEW` (the first: run it), :data:`RECHECK` (a repeat more than
        ``recheck_after`` s after the last run: run a re-check) or :data:`REPEAT` (nothing to run)."""
        raise NotImplementedError

    def release_episode(self, incident_id: str, kind: str) -> None:
        """Forget a :data:`NEW` claim whose run could not be queued, so that the retry runs it."""
        raise NotImplementedError

    # the blocks of tables beside the records' (:data:`TABLE_BLOCKS`), queried with "?" placeholders
    placeholder = "?"

    def tables(self, block: str, *, write: bool = False):
        """A context manager: an autocommit connection to one block of :data:`TABLE_BLOCKS`, its tables
        made on the first write; None when reading an index that has none yet."""
        raise NotImplementedError

    def sql(self, text: str) -> str:
        """A query written with ``?`` placeholders, in this index's driver's style."""
        return text.replace("?", self.placeholder)

    def rebuild(self, describe_all, out) -> dict[str, str]:
        """Replace every entry by ``describe_all()``'s (row, words), in order, in one transaction that
        holds the chain lock while the records are read; the previous entries' name → sha256. Sets
        ``out.previous`` (and ``out.moved_aside``) of a :class:`~.archive.Reindexed`."""
        raise NotImplementedError
