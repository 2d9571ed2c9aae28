"""The post-incident checklist's memory (``smartops_nb/postincident``), in the archive's index: each
item's state per incident, the idempotency keys of what was created outside, and the lessons learned
(read by the kernel too: a run's opening cell shows its runbook's lessons).

An idempotency key (``INCIDENT:statuspage``, ``INCIDENT:jira:ticket:<digest>`` ...) is *claimed* before
the outside call and *kept* with the created object's id after it; a second run, a retry or another
replica that finds the key reuses that object instead of creating one. A claim that never got its id
(the process died mid-call) is taken over once it is older than :data:`CLAIM_STALE_S`.
"""
from __future__ import annotations

import json
import secrets
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

from smartops_nb.params import iso, parse_time, utcnow

if TYPE_CHECKING:
    from .archive import Archive

#: A claim without a result older than this is taken to be a dead attempt (bounded calls end far sooner).
CLAIM_STALE_S = 600.0


class Claimed(Exception):
    """Another run is creating this object right now: do not create a second one."""


class Store:
    """The post-incident tables of one archive's index (SQLite beside a folder, else PostgreSQL)."""

    def __init__(self, archive: "Archive"):
        self._archive = archive
        self._held: Any = None

    @contextmanager
    def held(self, write: bool = True) -> Iterator["Store"]:
        """Keep one connection for the calls inside (a checklist pass makes dozens); ``write``: tables
        made. A reader of an index without the tables reads nothing, as without ``held``."""
        if self._held is not None:
            yield self
            return
        with self._db(write=write) as con:
            self._held = con
            try:
                yield self
            finally:
                self._held = None

    @contextmanager
    def _db(self, write: bool = False) -> Iterator[Any]:
        if self._held is not None:
            yield self._held
        else:
            with self._archive.tables("postincident", write=write) as con:
                yield con

    def _sql(self, sql: str) -> str:
        return self._archive.sql(sql)

    def _rows(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        with self._db() as con:
            return [] if con is None else [dict(r) for r in con.execute(self._sql(sql), args).fetchall()]

    def _write(self, sql: str, args: tuple = ()) -> int:
        with self._db(write=True) as con:
            return con.execute(self._sql(sql), args).rowcount

    # -- checklist items --------------------------------------------------------------------------
    def items(self, incident_id: str) -> dict[str, dict[str, Any]]:
        rows = self._rows("SELECT * FROM postincident_items WHERE incident_id = ?", (incident_id,))
        return {r["item"]: {**r, "detail": json.loads(r["detail"] or "{}")} for r in rows}

    def set_item(self, incident_id: str, item: str, status: str, *, by: str = "", link: str = "", error: str = "",
                 detail: dict[str, Any] | None = None) -> None:
        self._write("INSERT INTO postincident_items (incident_id, item, status, at, by_whom, link, error, detail) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (incident_id, item) DO UPDATE SET "
                    "status = excluded.status, at = excluded.at, by_whom = excluded.by_whom, link = excluded.link, "
                    "error = excluded.error, detail = excluded.detail",
                    (incident_id, item, status, iso(utcnow()), by, link, error, json.dumps(detail or {})))

    # -- idempotency keys -------------------------------------------------------------------------
    def key(self, key: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM postincident_keys WHERE key = ?", (key,))
        return rows[0] if rows else None

    def claim(self, key: str, incident_id: str, item: str) -> dict[str, Any] | None:
        """The kept object of ``key`` (a dict with ``ref``/``link``), or None once this caller holds the
        claim and must create it. Raises :class:`Claimed` while another caller's claim is fresh."""
        now = utcnow()
        won = self._write("INSERT INTO postincident_keys (key, incident_id, item, claimed_at) VALUES (?, ?, ?, ?) "
                          "ON CONFLICT (key) DO NOTHING", (key, incident_id, item, iso(now)))
        if won:
            return None
        row = self.key(key)
        if row is None:  # released between the two statements: try once more
            return self.claim(key, incident_id, item)
        if row["done_at"]:
            return row
        if (now - parse_time(row["claimed_at"])).total_seconds() < CLAIM_STALE_S:
            raise Claimed(f"another run is creating {key} (claimed at {row['claimed_at']})")
        took = self._write("UPDATE postincident_keys SET claimed_at = ? WHERE key = ? AND claimed_at = ? "
                           "AND done_at IS NULL", (iso(now), key, row["claimed_at"]))
        if not took:
            raise Claimed(f"another run took over {key}")
        return None

    def keep(self, key: str, ref: str, link: str = "") -> None:
        self._write("UPDATE postincident_keys SET ref = ?, link = ?, done_at = ? WHERE key = ?",
                    (str(ref), link, iso(utcnow()), key))

    def release(self, key: str) -> None:
        """Give up a claim whose call failed, so that a retry may create the object."""
        self._write("DELETE FROM postincident_keys WHERE key = ? AND done_at IS NULL", (key,))

    def keys_of(self, incident_id: str) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM postincident_keys WHERE incident_id = ? ORDER BY key", (incident_id,))

    # -- lessons ----------------------------------------------------------------------------------
    def add_lesson(self, incident_id: str, runbook: str, text: str, by: str) -> dict[str, Any]:
        row = {"id": "ls-" + secrets.token_hex(4), "incident_id": incident_id, "runbook": runbook, "text": text,
               "by_whom": by, "at": iso(utcnow())}
        self._write("INSERT INTO lessons (id, incident_id, runbook, text, by_whom, at) VALUES (?, ?, ?, ?, ?, ?)",
                    tuple(row.values()))
        return row

    def lessons(self, *, runbook: str | None = None, incident_id: str | None = None,
                limit: int = 20) -> list[dict[str, Any]]:
        """Newest first."""
        column, value = ("runbook", runbook) if runbook else ("incident_id", incident_id)
        return self._rows(f"SELECT * FROM lessons WHERE {column} = ? ORDER BY at DESC, id DESC LIMIT {int(limit)}",
                          (value,))
