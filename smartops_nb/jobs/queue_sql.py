"""Every SQL statement SmartOps runs against the queue's tables, by name.

Procrastinate keeps its own queries in one file (``procrastinate/sql/queries.sql``) behind its
``JobManager``; SmartOps uses that API where it has one (defer, retry, cancel, stalled jobs, jobs by
lock: :meth:`~procrastinate.manager.JobManager.list_locks_async`). What it does not offer is here:
our two tables (``smartops_job_notes``, ``smartops_workers``) and the reads that join Procrastinate's
``procrastinate_jobs`` / ``procrastinate_events`` / ``procrastinate_workers`` to them or need an event's
time. Parameters are named (``%(name)s``): the same text runs on a psycopg connection
(``conn.execute(SQL, {...})``) and through Procrastinate's connector (``execute_query_*_async(SQL, **kw)``).
"""
from __future__ import annotations

#: Procrastinate's schema is not applied yet (true/false, column ``missing``)
SCHEMA_MISSING = "SELECT to_regclass('procrastinate_jobs') IS NULL AS missing"

#: our worker-names table is missing (a queue made before worker names)
WORKERS_TABLE_MISSING = "SELECT to_regclass('smartops_workers') IS NULL AS missing"

#: applied beside Procrastinate's schema (idempotent)
NOTES_DDL = """
CREATE TABLE IF NOT EXISTS smartops_job_notes (
    id bigserial PRIMARY KEY,
    job_id bigint NOT NULL REFERENCES procrastinate_jobs(id) ON DELETE CASCADE,
    at timestamptz NOT NULL DEFAULT now(),
    note text NOT NULL
);
CREATE INDEX IF NOT EXISTS smartops_job_notes_job_id ON smartops_job_notes(job_id);
-- which `smartops worker` process (host:pid) each Procrastinate worker row belongs to
CREATE TABLE IF NOT EXISTS smartops_workers (
    worker_id bigint PRIMARY KEY REFERENCES procrastinate_workers(id) ON DELETE CASCADE,
    name text NOT NULL
);
"""

#: a line on a job's notes: %(job_id)s, %(note)s
ADD_NOTE = "INSERT INTO smartops_job_notes(job_id, note) VALUES (%(job_id)s, %(note)s)"

#: a job's notes, oldest first, each prefixed with its time: %(job_id)s
NOTES = """
SELECT to_char(at, 'YYYY-MM-DD"T"HH24:MI:SSOF') || ' ' || note FROM smartops_job_notes
 WHERE job_id = %(job_id)s ORDER BY id
"""

#: a Procrastinate worker is part of the `smartops worker` process %(name)s: %(worker_id)s, %(name)s
NAME_WORKER = "INSERT INTO smartops_workers (worker_id, name) VALUES (%(worker_id)s, %(name)s) ON CONFLICT DO NOTHING"

#: one row per `smartops worker` process (its two Procrastinate workers: runs and the sweep)
WORKERS = """
SELECT coalesce(n.name, '#' || w.id) AS name, min(w.id) AS id, array_agg(w.id ORDER BY w.id) AS ids,
       min(extract(epoch FROM now() - w.last_heartbeat)) AS age
  FROM procrastinate_workers w LEFT JOIN smartops_workers n ON n.worker_id = w.id
 GROUP BY 1 ORDER BY 2
"""

#: a queue's jobs by state: %(queue)s
JOBS_BY_STATE = """
SELECT status::text, count(*) AS n FROM procrastinate_jobs WHERE queue_name = %(queue)s GROUP BY 1
"""

#: waiting and running jobs, and how long the oldest has waited since it was deferred: %(queue)s
DEPTH = """
SELECT count(*) FILTER (WHERE status = 'todo') AS waiting,
       count(*) FILTER (WHERE status = 'doing') AS running,
       extract(epoch FROM now() - min(e.at) FILTER (WHERE status = 'todo')) AS oldest_waiting_s
  FROM procrastinate_jobs j
  LEFT JOIN procrastinate_events e ON e.job_id = j.id AND e.type = 'deferred'
 WHERE j.queue_name = %(queue)s AND j.status IN ('todo', 'doing')
"""

#: the latest jobs of a queue, each with its last note: %(queue)s, %(limit)s
LATEST_JOBS = """
SELECT j.id, j.status::text AS status, j.attempts, j.worker_id, j.queueing_lock AS key,
       (SELECT note FROM smartops_job_notes n WHERE n.job_id = j.id ORDER BY n.id DESC LIMIT 1) AS last_note
  FROM procrastinate_jobs j WHERE j.queue_name = %(queue)s ORDER BY j.id DESC LIMIT %(limit)s
"""

#: another job of the same incident and kind (%(lock)s) that finished after this one (%(id)s) was
#: deferred: it ran while this one waited, so this one must not run again: %(lock)s, %(id)s, %(queue)s
RAN_MEANWHILE = """
SELECT o.id FROM procrastinate_jobs o
 WHERE o.lock = %(lock)s AND o.id < %(id)s AND o.queue_name = %(queue)s
   AND EXISTS (SELECT 1 FROM procrastinate_events e
                WHERE e.job_id = o.id AND e.type IN ('succeeded', 'failed', 'aborted')
                  AND e.at >= (SELECT min(d.at) FROM procrastinate_events d
                                WHERE d.job_id = %(id)s AND d.type = 'deferred'))
 ORDER BY o.id DESC LIMIT 1
"""

#: replicas starting together apply the schema once (held to the end of the transaction): %(key)s
SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(hashtext(%(key)s))"
