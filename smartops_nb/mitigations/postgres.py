"""PostgreSQL mitigations: terminating idle connections (the seed's query, made safe).

Never the runbook's own session, never another database's backends, never non-client backends
(autovacuum, walsender, ...), and only connections that are still idle past the threshold when
the statement runs (the WHERE clause is re-evaluated at execution, not trusted from the preview).
"""
from __future__ import annotations

from smartops_nb.actions import Action
from smartops_nb.probes.postgres import Session, database_name
from smartops_nb.waiting import until

_SELECT_IDLE = """
SELECT pid, application_name, usename AS role, client_addr::text AS client,
       extract(epoch FROM now() - state_change)::int AS idle_seconds
FROM pg_stat_activity
WHERE backend_type = 'client backend'
  AND datname = current_database()
  AND state = 'idle'
  AND state_change < now() - make_interval(secs => %(secs)s)
  AND pid <> pg_backend_pid()
  AND coalesce(application_name, '') NOT LIKE 'smartops:%%'
"""

_TERMINATE = f"""
SELECT pid, pg_terminate_backend(pid) AS terminated FROM ({_SELECT_IDLE}) AS idle
"""

_COUNT = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"


def terminate_idle_connections(session: Session, idle_minutes: float) -> Action:
    secs = float(idle_minutes) * 60

    def preview() -> dict:
        rows = session.query(_SELECT_IDLE, {"secs": secs})
        return {"would_terminate": [int(p) for p in rows["pid"]], "count": int(len(rows))}

    def execute() -> dict:
        before = int(session.scalar(_COUNT))
        conn = session.writable()
        try:
            rows = conn.execute(_TERMINATE, {"secs": secs}).fetchall()
        finally:
            conn.close()
        terminated_set = {int(pid) for pid, ok in rows if ok}
        after = _count_after_exit(session, terminated_set)
        terminated = [int(pid) for pid, ok in rows if ok]
        return {"terminated_pids": terminated, "terminated": len(terminated),
                "not_terminated": [int(pid) for pid, ok in rows if not ok],
                "client_connections_before": before, "client_connections_after": after}

    return Action(
        name="terminate-idle-connections",
        target=f"database {database_name(session.dsn)}: connections idle > {idle_minutes:g} min",
        description="pg_terminate_backend() on idle client connections of this database",
        execute=execute, preview=preview,
    )


def _count_after_exit(session: Session, pids: set[int], wait_s: float = 3.0) -> int:
    """Client count once the signalled backends have exited (termination is asynchronous)."""
    if pids:
        until(lambda: session.query("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%(p)s)", {"p": list(pids)}),
              wait_s, 0.1, done=lambda alive: not len(alive))
    return int(session.scalar(_COUNT))


# -- create-index (high-latency) -----------------------------------------------------------------
INDEX_BUILD_TIMEOUT_S = 600


def concurrent_ddl(ddl: str) -> str:
    """The expected index's DDL as ``CREATE INDEX CONCURRENTLY IF NOT EXISTS name ON table (...)``."""
    from smartops_nb.probes.postgres import parse_index_ddl

    want = parse_index_ddl(ddl)  # refuses anything but one CREATE INDEX on plain columns
    unique = "UNIQUE " if want["unique"] else ""
    return (f"CREATE {unique}INDEX CONCURRENTLY IF NOT EXISTS {want['name']} ON {want['table']} "
            f"USING {want['method']} ({', '.join(want['columns'])})")


def create_index(session: Session, ddl: str, timeout_s: float = INDEX_BUILD_TIMEOUT_S) -> Action:
    """Build the expected index without blocking writes (CONCURRENTLY: outside a transaction,
    on an autocommit connection). Before/after: index presence and the slowest query's plan.
    A failed concurrent build leaves an INVALID index behind; it is dropped so a retry can work."""
    from smartops_nb.probes.postgres import explain, index_status, parse_index_ddl, slowest_query

    # parsed when the action is previewed or run (inside carry_out), never here: a bad
    # expected_index must become the action's recorded error, not an exception outside any step
    try:
        want = parse_index_ddl(ddl)
        target = f"table {want['table']}: index {want['name']} ({', '.join(want['columns'])})"
    except Exception as e:
        target = f"expected index {ddl!r} (not a CREATE INDEX the runbook can run: {e})"

    def evidence(want: dict) -> dict:
        status = index_status(session, ddl)
        query = slowest_query(session, want["table"])
        plan = explain(session, query) if query else None
        return {"index_exists": status["exists"], "index_valid": status["valid"],
                "seq_scans": plan["seq_scans"] if plan else [], "indexes_used": plan["indexes_used"] if plan else [],
                "plan": plan["plan"][:15] if plan else [], "query": query[:300]}

    def preview() -> dict:
        return {"statement": concurrent_ddl(ddl), **evidence(parse_index_ddl(ddl))}

    def execute() -> dict:
        statement, want = concurrent_ddl(ddl), parse_index_ddl(ddl)
        before = evidence(want)
        if before["index_exists"] and not before["index_valid"]:
            raise RuntimeError(f"index {want['name']} exists but is INVALID: DROP INDEX CONCURRENTLY it first")
        conn = session.writable()
        if not getattr(conn, "autocommit", False):
            conn.close()
            raise RuntimeError("no autocommit connection available: CREATE INDEX CONCURRENTLY cannot run "
                               "inside a transaction")
        try:
            ms = int(timeout_s * 1000)
            conn.execute(f"SET statement_timeout = {ms}")
            conn.execute(f"SET lock_timeout = {ms}")   # CONCURRENTLY waits for older transactions
            try:
                conn.execute(statement)
            except Exception:
                still = conn.execute("SELECT NOT ix.indisvalid FROM pg_index ix JOIN pg_class c ON c.oid = "
                                     "ix.indexrelid WHERE c.relname = %s", (want["name"],)).fetchone()
                if still and still[0]:
                    conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {want['name']}")
                raise
        finally:
            conn.close()
        return {"statement": statement, "before": before, "after": evidence(want)}

    return Action(
        name="create-index",
        target=target,
        description=f"CREATE INDEX CONCURRENTLY of the expected index ({ddl})",
        execute=execute, preview=preview,
    )
