"""The job queue: a Procrastinate App on the team's PostgreSQL (we glue, Procrastinate queues).

``smartops serve --queue DSN`` defers one job per accepted run; ``smartops worker --queue DSN`` runs
them; ``smartops queue`` inspects them. Procrastinate is reached through its App and ``JobManager``;
the SQL it has no API for is named in :mod:`.queue_sql`. Jobs live in Procrastinate's tables (``procrastinate_jobs``,
``procrastinate_events``, ``procrastinate_workers``); our one table, ``smartops_job_notes``, holds
what Procrastinate does not keep: why a job failed, an attempt lost with its worker, the record
each attempt wrote (``smartops queue status`` shows them). No parameter value is ever written
there or in a job: a job holds the alert and its route's key (see :mod:`.tasks`).
"""
from __future__ import annotations

import logging
from typing import Any

from smartops_nb.params import ParameterError
from smartops_nb.support.reasons import one_line

from . import queue_sql

log = logging.getLogger("smartops.queue")

RUNS_QUEUE = "smartops-runs"              # alert runs
MAINTENANCE_QUEUE = "smartops-maintenance"  # the periodic stalled-job sweep (never waits behind runs)
NAMESPACE = "smartops"
RUN_TASK = f"{NAMESPACE}:run"
APPROVE_TASK = f"{NAMESPACE}:approve"
CONNECT_TIMEOUT = 5                       # seconds: every connection to the queue is bounded
SCHEMA_LOCK = "smartops queue schema"     # advisory lock: replicas starting together apply it once

def name_workers(dsn: str, name: str, worker_ids: list[int]) -> None:
    """Note that these Procrastinate workers are the process ``name`` (host:pid), for `queue status`."""
    with connect(dsn, autocommit=True) as c:
        for wid in worker_ids:
            c.execute(queue_sql.NAME_WORKER, {"worker_id": wid, "name": name})


def safe_dsn(dsn: str) -> str:
    """The DSN for messages: host, port, database and user, never a password."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        d = conninfo_to_dict(dsn)
    except Exception:
        return "(unparsable DSN)"
    return f"{d.get('user', '')}@{d.get('host', 'localhost')}:{d.get('port', 5432)}/{d.get('dbname', '')}"


def unreachable(dsn: str, e: BaseException) -> ParameterError:
    """One line naming the queue (no password) and the reason: exit 2 at start-up."""
    reason = one_line(e, typed=False)
    return ParameterError(f"queue unreachable at {safe_dsn(dsn)}: {reason}")


def connect(dsn: str, **kw):
    """A plain, bounded psycopg connection to the queue's database (schema, status, notes)."""
    import psycopg

    return psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT, **kw)


def ensure_schema(dsn: str) -> bool:
    """Apply Procrastinate's schema and our notes table if missing; True if it was applied now.

    Idempotent and safe when several ``serve``/``worker`` processes start at once: one transaction
    under an advisory lock, the check inside it. Raises :class:`ParameterError` if unreachable.
    """
    import psycopg
    from procrastinate.schema import SchemaManager

    try:
        with connect(dsn) as conn:
            with conn.transaction():
                conn.execute(queue_sql.SCHEMA_LOCK, {"key": SCHEMA_LOCK})
                missing = conn.execute(queue_sql.SCHEMA_MISSING).fetchone()[0]
                if missing:
                    conn.execute(SchemaManager.get_schema())
                conn.execute(queue_sql.NOTES_DDL)
    except psycopg.Error as e:
        raise unreachable(dsn, e) from None
    if missing:
        log.info("queue schema applied at %s", safe_dsn(dsn))
    return bool(missing)


def make_app(dsn: str, *, pool_timeout: float = 5.0, max_size: int = 10):
    """A Procrastinate App on ``dsn`` with SmartOps' tasks (not opened). Connections are checked
    when taken from the pool (a restarted PostgreSQL is reconnected to), and bounded in time."""
    import procrastinate
    from . import tasks

    connector = procrastinate.PsycopgConnector(
        conninfo=dsn, min_size=1, max_size=max_size, timeout=pool_timeout,
        kwargs={"connect_timeout": CONNECT_TIMEOUT})  # Procrastinate's pool checks connections when taken
    app = procrastinate.App(connector=connector)
    tasks.register(app, runs_queue=RUNS_QUEUE, maintenance_queue=MAINTENANCE_QUEUE, namespace=NAMESPACE)
    return app


# -- notes on jobs, and what `queue status` reports ----------------------------------------------------
def note(conn, job_id: int, text: str) -> None:
    """Add a line to a job's notes (its own autocommit statement)."""
    conn.execute(queue_sql.ADD_NOTE, {"job_id": job_id, "note": text})


def notes(conn, job_id: int) -> list[str]:
    return [r[0] for r in conn.execute(queue_sql.NOTES, {"job_id": job_id})]


def status(dsn: str, *, jobs: int = 20) -> dict[str, Any]:
    """Jobs by state, workers (last heartbeat), the oldest waiting job, the latest jobs with notes."""
    import psycopg
    from psycopg.rows import dict_row

    try:
        with connect(dsn, autocommit=True, row_factory=dict_row) as c:
            if c.execute(queue_sql.SCHEMA_MISSING).fetchone()["missing"]:
                raise ParameterError(f"no queue schema at {safe_dsn(dsn)}: run `smartops queue init`")
            runs = {"queue": RUNS_QUEUE}
            by_state = {r["status"]: r["n"] for r in c.execute(queue_sql.JOBS_BY_STATE, runs)}
            depth = c.execute(queue_sql.DEPTH, runs).fetchone()
            if c.execute(queue_sql.WORKERS_TABLE_MISSING).fetchone()["missing"]:
                c.execute(queue_sql.NOTES_DDL)  # a queue made before worker names
            workers = [{"name": r["name"], "id": r["id"], "ids": r["ids"], "last_heartbeat_s": round(float(r["age"]), 1)}
                       for r in c.execute(queue_sql.WORKERS)]
            latest = c.execute(queue_sql.LATEST_JOBS, {**runs, "limit": jobs}).fetchall()
    except psycopg.Error as e:
        raise unreachable(dsn, e) from None
    oldest = depth["oldest_waiting_s"]
    return {"queue": safe_dsn(dsn), "jobs": by_state, "waiting": depth["waiting"], "running": depth["running"],
            "oldest_waiting_s": round(float(oldest), 1) if oldest is not None else None,
            "workers": workers, "latest": latest}
