"""``smartops worker`` and ``smartops queue``: the team mode's job runners and the queue's state.

Both take the queue's PostgreSQL DSN from ``--queue`` or ``$SMARTOPS_QUEUE``. An unreachable queue at
start is one line on stderr and exit 2.
"""
from __future__ import annotations

import json
import os
import sys

from smartops_nb.contract import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, QUEUE_ENV
from smartops_nb.params import ParameterError
from smartops_nb.support.reasons import one_line

from .serve import DEFAULT_ROUTES


def _dsn_arg(p) -> None:
    p.add_argument("--queue", metavar="DSN", default=None,
                   help=f"PostgreSQL DSN of the job queue (default ${QUEUE_ENV})")


def _dsn(args) -> str:
    dsn = args.queue or os.environ.get(QUEUE_ENV)
    if not dsn:
        raise ParameterError(f"no queue: give --queue DSN or set ${QUEUE_ENV}")
    return dsn


def register(subparsers, parser_class) -> None:
    w = subparsers.add_parser(
        "worker", help="run queued alert runs (team mode: `smartops serve --queue`)",
        description="Take alert runs from the PostgreSQL job queue that `smartops serve --queue` fills and run "
                    "them as serve does in-process (warm kernels, one kernel per run, the same record). Each run "
                    "has a wall-clock deadline (its kernel's process group is killed). A worker that dies is "
                    "noticed by its missing heartbeats and its jobs run again elsewhere. SIGTERM/SIGINT drain: "
                    "runs finish within --drain-timeout or go back to the queue. Exit 2: bad routes/parameters "
                    "or an unreachable queue.")
    _dsn_arg(w)
    w.add_argument("--concurrency", type=int, default=2, metavar="N", help="runs at the same time (2)")
    w.add_argument("--warm", type=int, default=None, metavar="N",
                   help="warm kernels kept ready (default: one per run slot; 0: cold runs)")
    from smartops_nb.cli.archive import add_location

    add_location(w)  # --archive DIR|s3://..., --index sqlite|DSN: workers on many machines share one archive
    w.add_argument("-f", "--parameters-file", action="append", default=[], metavar="FILE",
                   help="base YAML parameters file(s) for every run (secrets stay here, never in the queue)")
    w.add_argument("--routes", default=DEFAULT_ROUTES, metavar="FILE",
                   help=f"routes file: the same as serve's ({DEFAULT_ROUTES})")
    w.add_argument("--run-timeout", type=float, default=1800, metavar="S",
                   help="wall-clock seconds one run may take before its kernel is killed (1800)")
    w.add_argument("--cell-timeout", type=int, default=600, metavar="S", help="seconds one cell may run (600)")
    w.add_argument("--drain-timeout", type=float, default=60, metavar="S",
                   help="on SIGTERM, seconds to let runs finish before handing them back (60)")
    w.add_argument("--heartbeat", type=float, default=10, metavar="S",
                   help="seconds between heartbeats; a worker silent for 3 of them is dead and its jobs run "
                        "again elsewhere (10)")
    w.add_argument("--poll", type=float, default=5, metavar="S",
                   help="seconds between job polls besides LISTEN/NOTIFY wake-ups (5)")
    w.set_defaults(func=cmd_worker)

    q = subparsers.add_parser(
        "queue", help="the team mode's job queue: init, status, retry, cancel",
        description="Inspect and steer the PostgreSQL job queue of `smartops serve --queue` and `smartops worker`.")
    qs = q.add_subparsers(dest="queue_command", required=True, parser_class=parser_class)
    i = qs.add_parser("init", help="apply the queue's schema if missing (idempotent; serve and worker do it too)")
    s = qs.add_parser("status", help="jobs by state, workers alive (last heartbeat), oldest waiting, latest jobs")
    s.add_argument("--jobs", type=int, default=20, metavar="N", help="latest jobs to list (20)")
    r = qs.add_parser("retry", help="queue a failed (or stuck running) job again")
    c = qs.add_parser("cancel", help="cancel a waiting job (a running one is asked to stop)")
    for p in (r, c):
        p.add_argument("job", type=int, help="job id (see `smartops queue status`)")
    for p in (i, s, r, c):
        _dsn_arg(p)
        p.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(func=cmd_queue)


def cmd_worker(args) -> int:
    from smartops_nb.jobs import worker
    from smartops_nb.records.archive import open_archive
    from smartops_nb.server import serve

    try:
        dsn = _dsn(args)
        if args.concurrency < 1 or args.run_timeout <= 0 or args.heartbeat <= 0:
            raise ParameterError("--concurrency, --run-timeout and --heartbeat must be positive")
        routes = serve.load_routes(args.routes, args.parameters_file)
        runner = worker.Runner(dsn, routes, open_archive(args.archive, args.index),
                               warm=args.concurrency if args.warm is None else args.warm,
                               cell_timeout=args.cell_timeout, run_timeout=args.run_timeout,
                               stalled_after=3 * args.heartbeat)
        return worker.run_worker(dsn, runner, concurrency=args.concurrency, drain_timeout=args.drain_timeout,
                                 heartbeat=args.heartbeat, poll=args.poll)
    except ParameterError as e:
        print(f"smartops worker: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


def cmd_queue(args) -> int:
    from smartops_nb.jobs import app as queue_app

    try:
        dsn = _dsn(args)
        if args.queue_command == "init":
            applied = queue_app.ensure_schema(dsn)
            out = {"queue": queue_app.safe_dsn(dsn), "applied": applied}
            text = f"queue schema {'applied' if applied else 'already present'} at {out['queue']}"
        elif args.queue_command == "status":
            out = queue_app.status(dsn, jobs=args.jobs)
            text = _status_text(out)
        else:
            out = _steer(dsn, args.queue_command, args.job)
            text = f"job {args.job}: {out['result']}"
    except ParameterError as e:
        print(f"smartops queue: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except LookupError as e:
        print(f"smartops queue: {e.args[0]}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(out, default=str, indent=2) if args.json else text)
    return EXIT_OK


def _steer(dsn: str, what: str, job_id: int) -> dict:
    """retry/cancel one job through Procrastinate's job manager."""
    import datetime

    import psycopg
    from procrastinate import exceptions

    from smartops_nb.jobs import app as queue_app

    try:
        with queue_app.connect(dsn):  # unreachable: one line at once, not a pool's 30 s of retries
            pass
    except psycopg.Error as e:
        raise queue_app.unreachable(dsn, e) from None
    app = queue_app.make_app(dsn)
    try:
        with app.open():
            if what == "retry":
                try:
                    app.job_manager.retry_job_by_id(job_id, retry_at=datetime.datetime.now(datetime.timezone.utc))
                except exceptions.ConnectorException as e:
                    raise LookupError(f"job {job_id} cannot be retried (not failed or running, or unknown): "
                                      f"{one_line(e.__cause__ or e, typed=False)}") from None
                result = "queued again"
            else:
                if not app.job_manager.cancel_job_by_id(job_id, abort=True):
                    raise LookupError(f"job {job_id} cannot be cancelled (not waiting or running, or unknown)")
                result = "cancelled (a running job is asked to stop)"
    except (psycopg.Error, exceptions.ConnectorException) as e:
        raise queue_app.unreachable(dsn, e) from None
    return {"job": job_id, "result": result}


def _status_text(s: dict) -> str:
    lines = [f"queue {s['queue']}",
             "jobs: " + (", ".join(f"{k} {v}" for k, v in sorted(s["jobs"].items())) or "none"),
             f"waiting {s['waiting']}, running {s['running']}, oldest waiting "
             + (f"{s['oldest_waiting_s']} s" if s["oldest_waiting_s"] is not None else "-"),
             "workers: " + (", ".join(f"{w['name']} (heartbeat {w['last_heartbeat_s']} s ago)"
                                      for w in s["workers"]) or "none")]
    for j in s["latest"]:
        lines.append(f"  job {j['id']:>6} {j['status']:<9} attempts {j['attempts']} {j['key'] or ''}"
                     + (f" — {j['last_note']}" if j["last_note"] else ""))
    return "\n".join(lines)
