"""PostgreSQL mitigations: terminating idle connections (the seed's query, made safe).

Never the runbook's own session, never another database's backends, never non-client backends
(autovacuum, walsender, ...), and only connections that are still idle past the threshold when
the statement runs (the WHERE clause is re-evaluated at execution, not trusted from the preview).
"""
from __future__ import annotations

from ..actions import Action
from ..probes.postgres import Session, database_name

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
    import time

    deadline = time.monotonic() + wait_s
    while pids and time.monotonic() < deadline:
        alive = session.query("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%(p)s)", {"p": list(pids)})
        if not len(alive):
            break
        time.sleep(0.1)
    return int(session.scalar(_COUNT))
