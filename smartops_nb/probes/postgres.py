"""Read PostgreSQL: log in safely, and query pg_stat_activity and settings.

The investigation connection is read-only (``default_transaction_read_only``), has a short
``statement_timeout`` and an ``application_name`` that marks it as the runbook's own, so that
it can be told apart from (and never counted as, or terminated as) an application connection.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from smartops_nb import redact
from smartops_nb.support.reasons import flat

CONNECT_TIMEOUT_S = 5
STATEMENT_TIMEOUT_MS = 5000

# Refusals that mean "every slot is taken": they are evidence, not just an error.
SLOT_REFUSALS = (
    "too many clients already",
    "remaining connection slots are reserved",
    "sorry, too many clients",
)


class Unreachable(RuntimeError):
    """The database could not be reached or refused the login; the message says why."""


@dataclass
class LoginAttempt:
    dsn: str                       # masked
    ok: bool
    via: str = "postgres_dsn"      # or postgres_admin_dsn
    error: str = ""
    slots_exhausted: bool = False  # refused because no connection slot was free
    attempts: list[dict[str, Any]] = field(default_factory=list)


def classify_error(message: str) -> bool:
    """True when a login error says the server has no free connection slot."""
    low = message.lower()
    return any(s in low for s in SLOT_REFUSALS)


def connect(dsn: str, application_name: str, *, read_only: bool = True, timeout: int = CONNECT_TIMEOUT_S):
    import psycopg

    options = f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c lock_timeout=2000"
    if read_only:
        options += " -c default_transaction_read_only=on"
    return psycopg.connect(dsn, connect_timeout=timeout, application_name=application_name,
                           options=options, autocommit=True)


class Session:
    """A lazily opened, read-only investigation session (the one connection a runbook holds).

    :meth:`login` tries ``dsn`` and, when that is refused for lack of slots, ``admin_dsn`` (a role
    allowed to use the reserved slots). Probes call :attr:`conn`, which raises :class:`Unreachable`
    with the recorded reason when no login succeeded.
    """

    def __init__(self, dsn: str, application_name: str, admin_dsn: str = ""):
        self.dsn, self.admin_dsn, self.application_name = dsn, admin_dsn, application_name
        self._conn = None
        self._attempt: LoginAttempt | None = None

    def login(self) -> LoginAttempt:
        if self._attempt is not None:
            return self._attempt
        attempts = []
        for via, dsn in (("postgres_dsn", self.dsn), ("postgres_admin_dsn", self.admin_dsn)):
            if not dsn:
                continue
            try:
                self._conn = connect(dsn, self.application_name)
                attempts.append({"via": via, "ok": True})
                self._attempt = LoginAttempt(redact.safe_dsn(dsn), True, via=via, attempts=attempts,
                                             slots_exhausted=any(a.get("slots_exhausted") for a in attempts))
                return self._attempt
            except Exception as e:
                msg = redact.scrub(flat(e))
                attempts.append({"via": via, "ok": False, "error": msg, "slots_exhausted": classify_error(msg)})
        first = attempts[0] if attempts else {"error": "no postgres_dsn given", "slots_exhausted": False}
        self._attempt = LoginAttempt(redact.safe_dsn(self.dsn), False, error=first["error"],
                                     slots_exhausted=any(a.get("slots_exhausted") for a in attempts),
                                     attempts=attempts)
        return self._attempt

    @property
    def conn(self):
        attempt = self.login()
        if not attempt.ok or self._conn is None:
            raise Unreachable(f"no database session: {attempt.error}")
        return self._conn

    def query(self, sql: str, params: tuple | dict | None = None) -> pd.DataFrame:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            cols = [c.name for c in cur.description] if cur.description else []
            return pd.DataFrame(cur.fetchall(), columns=cols)

    def scalar(self, sql: str, params: tuple | dict | None = None) -> Any:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            row = cur.fetchone()
            return row[0] if row else None

    def writable(self):
        """A separate read-write connection for an approved mitigation (admin role preferred)."""
        last: Exception | None = None
        for dsn in (self.admin_dsn, self.dsn):
            if dsn:
                try:
                    return connect(dsn, self.application_name + ":mitigation", read_only=False)
                except Exception as e:
                    last = e
        # every slot taken: reuse the investigation session's slot for one read-write transaction
        if self._conn is not None:
            return _ReadWriteOnSession(self._conn)
        raise Unreachable(f"cannot open a connection for the mitigation: {redact.scrub(str(last))}")

    def close(self) -> None:
        """Give the connection slot back; a later query logs in again."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
            self._attempt = None


class _ReadWriteOnSession:
    """Borrow the investigation session for one explicit READ WRITE transaction."""

    def __init__(self, conn):
        self._conn = conn

    def execute(self, sql, params=None):
        with self._conn.transaction():
            self._conn.execute("SET TRANSACTION READ WRITE")
            return self._conn.execute(sql, params)

    def close(self) -> None:  # the session is not ours to close
        pass


# -- queries -----------------------------------------------------------------------------------
# Every client backend counts, whatever its state: a pool exhausted by idle sessions is common.
CLIENTS_SQL = """
SELECT pid, usename AS role, datname AS database, application_name, client_addr::text AS client,
       coalesce(state, 'unknown') AS state, backend_start, state_change, query_start,
       extract(epoch FROM now() - state_change) AS seconds_in_state,
       (pid = pg_backend_pid() OR application_name LIKE 'smartops:%') AS is_runbook
FROM pg_stat_activity
WHERE backend_type = 'client backend'
"""


def client_connections(session: Session) -> pd.DataFrame:
    """Every client backend of the server (all databases), one row each."""
    return session.query(CLIENTS_SQL)


def connection_limits(session: Session) -> dict[str, int]:
    """max_connections and the slots reserved for superusers and pg_use_reserved_connections."""
    df = session.query(
        "SELECT name, setting::int AS value FROM pg_settings WHERE name IN "
        "('max_connections','superuser_reserved_connections','reserved_connections')")
    values = dict(zip(df["name"], df["value"]))
    return {k: int(values.get(k, 0)) for k in ("max_connections", "superuser_reserved_connections",
                                                "reserved_connections")}


def current_database(session: Session) -> str:
    return session.scalar("SELECT current_database()")


def database_name(dsn: str) -> str:
    """The database a DSN names (no connection made)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        return str(conninfo_to_dict(dsn).get("dbname") or "?")
    except Exception:
        return "?"


# -- slow queries, plans and indexes (high-latency runbook) ------------------------------------
ACTIVE_QUERIES_SQL = """
SELECT pid, usename AS role, application_name, state,
       extract(epoch FROM now() - query_start) AS duration_s, wait_event_type, query
FROM pg_stat_activity
WHERE state = 'active' AND backend_type = 'client backend'
  AND pid <> pg_backend_pid() AND coalesce(application_name, '') NOT LIKE 'smartops:%%'
ORDER BY duration_s DESC NULLS LAST
LIMIT %(limit)s
"""

STATEMENTS_SQL = """
SELECT s.calls, round(s.mean_exec_time::numeric, 1) AS mean_ms, round(s.max_exec_time::numeric, 1) AS max_ms,
       round(s.total_exec_time::numeric, 0) AS total_ms, s.rows, s.query
FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND r.rolname <> current_user AND s.query !~* '^\\s*(explain|set|show|begin|commit|rollback)\\M'
  -- superusers' statements are maintenance (migrations, bootstrap), not the application's latency
  AND NOT r.rolsuper
ORDER BY s.mean_exec_time DESC
LIMIT %(limit)s
"""


def slow_active_queries(session: Session, limit: int = 10) -> pd.DataFrame:
    """The seed's query: active statements of other clients, longest running first."""
    return session.query(ACTIVE_QUERIES_SQL, {"limit": int(limit)})


def has_pg_stat_statements(session: Session) -> bool:
    return bool(session.scalar("SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'"))


def statement_stats(session: Session, limit: int = 10) -> pd.DataFrame | None:
    """pg_stat_statements by mean time (other roles' statements), or None when not installed."""
    if not has_pg_stat_statements(session):
        return None
    return session.query(STATEMENTS_SQL, {"limit": int(limit)})


_READ_ONLY_START = re.compile(r"^\s*(select|with)\b", re.I)


def explainable(sql: str) -> bool:
    """A single SELECT/WITH statement (no ``;`` inside): the only text this module will EXPLAIN."""
    text = (sql or "").strip().rstrip(";").strip()
    return bool(_READ_ONLY_START.match(text)) and ";" not in text


def explain(session: Session, sql: str) -> dict[str, Any]:
    """The plan of ``sql`` from ``EXPLAIN`` (never ANALYZE: the statement is not run).

    Normalised text with ``$1`` placeholders (pg_stat_statements, server-side binding) is planned
    with ``GENERIC_PLAN`` (PostgreSQL 16+). Returns the text plan, the JSON plan's nodes
    (type, relation, index) and whether it reads a table sequentially.
    """
    if not explainable(sql):
        raise ValueError("only a single SELECT/WITH statement is explained")
    text = sql.strip().rstrip(";")
    generic = bool(re.search(r"\$\d+", text))
    opts = "GENERIC_PLAN, " if generic else ""
    # the session is read-only with a statement timeout; EXPLAIN without ANALYZE executes nothing
    plan_json = session.scalar(f"EXPLAIN ({opts}FORMAT JSON) {text}")
    plan_text = session.query(f"EXPLAIN ({opts}COSTS true) {text}").iloc[:, 0].tolist()
    plan = plan_json[0]["Plan"] if isinstance(plan_json, list) else json.loads(plan_json)[0]["Plan"]
    nodes = list(_nodes(plan))
    return {"query": text, "generic_plan": generic, "plan": plan_text, "total_cost": plan.get("Total Cost"),
            "nodes": nodes,
            "seq_scans": sorted({n["relation"] for n in nodes if n["node"] == "Seq Scan" and n["relation"]}),
            "indexes_used": sorted({n["index"] for n in nodes if n["index"]})}


def _nodes(plan: dict):
    yield {"node": plan.get("Node Type", ""), "relation": plan.get("Relation Name", ""),
           "index": plan.get("Index Name", ""), "cost": plan.get("Total Cost")}
    for child in plan.get("Plans", []) or []:
        yield from _nodes(child)


_INDEX_DDL = re.compile(
    r"^\s*create\s+(?P<unique>unique\s+)?index\s+(?:concurrently\s+)?(?:if\s+not\s+exists\s+)?"
    r"(?P<name>[a-z_][a-z0-9_$]*)\s+on\s+(?:only\s+)?(?P<table>[a-z_][a-z0-9_$]*(?:\.[a-z_][a-z0-9_$]*)?)\s*"
    r"(?:using\s+(?P<method>[a-z]+)\s*)?\((?P<columns>[^;()]+)\)\s*;?\s*$", re.I)


def parse_index_ddl(ddl: str) -> dict[str, Any]:
    """``CREATE INDEX [IF NOT EXISTS] name ON table (cols)`` → name, table, columns (plain columns only)."""
    m = _INDEX_DDL.match(ddl or "")
    if not m:
        raise ValueError(f"not a single CREATE INDEX statement on plain columns: {ddl!r}")
    cols = [c.strip().split()[0].lower() for c in m["columns"].split(",")]
    return {"name": m["name"].lower(), "table": m["table"].lower(), "columns": cols,
            "unique": bool(m["unique"]), "method": (m["method"] or "btree").lower()}


INDEXES_SQL = """
SELECT i.relname AS index, ix.indisvalid AS valid,
       array(SELECT a.attname FROM unnest(ix.indkey) WITH ORDINALITY k(attnum, n)
             JOIN pg_attribute a ON a.attrelid = ix.indrelid AND a.attnum = k.attnum ORDER BY k.n)::text[] AS columns,
       pg_get_indexdef(ix.indexrelid) AS definition
FROM pg_index ix JOIN pg_class i ON i.oid = ix.indexrelid
WHERE ix.indrelid = to_regclass(%(table)s)
"""


def index_status(session: Session, ddl: str) -> dict[str, Any]:
    """Does the index ``ddl`` describes exist (by name), is it valid, or does another serve it?

    "Serves it" = a valid index on the same table whose leading columns are the expected ones.
    """
    want = parse_index_ddl(ddl)
    table_exists = session.scalar("SELECT to_regclass(%(t)s) IS NOT NULL", {"t": want["table"]})
    rows = session.query(INDEXES_SQL, {"table": want["table"]}) if table_exists else pd.DataFrame()
    named = rows[rows["index"] == want["name"]] if len(rows) else rows
    n = len(want["columns"])
    serving = [r["index"] for _, r in rows.iterrows()
               if r["valid"] and [c.lower() for c in r["columns"][:n]] == want["columns"]] if len(rows) else []
    return {**want, "table_exists": bool(table_exists), "exists": bool(len(named)),
            "valid": bool(len(named) and named.iloc[0]["valid"]), "serving_indexes": serving,
            "definition": str(named.iloc[0]["definition"]) if len(named) else "",
            "table_indexes": rows.to_dict("records") if len(rows) else []}


def slowest_query(session: Session, table: str = "") -> str:
    """The text of the slowest explainable query: longest active one, else highest mean in
    pg_stat_statements; those that mention ``table`` first. Empty when there is none."""
    candidates = [q for q in slow_active_queries(session, 20).get("query", pd.Series(dtype=str))]
    stats = statement_stats(session, 20)
    if stats is not None:
        candidates += list(stats["query"])
    candidates = [q for q in candidates if explainable(q)]
    if table:
        on_table = [q for q in candidates if re.search(rf"\b{re.escape(table.split('.')[-1])}\b", q, re.I)]
        candidates = on_table or candidates
    return candidates[0] if candidates else ""


def explain_slowest(session: Session, table: str = "") -> dict[str, Any] | None:
    """:func:`explain` of :func:`slowest_query` (None when there is no query to explain)."""
    query = slowest_query(session, table)
    return explain(session, query) if query else None
