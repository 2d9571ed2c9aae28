"""The ``smartops`` command line.

Exit codes automation can rely on: 0 the runbook ran to the end (whatever it found), 1 the
notebook failed (the record is still saved), 2 bad input (nothing was executed).
"""
from __future__ import annotations

import argparse
import faulthandler
import importlib
import json
import logging
import os
import sys

from smartops_nb import catalog
from smartops_nb.cli import logs
from smartops_nb.contract import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from smartops_nb.params import ParameterError, parse_cli_value

#: Modules with ``register(subparsers, parser_class)`` adding their own sub-commands.
EXTRA_COMMANDS: list[str] = ["smartops_nb.cli.sandbox", "smartops_nb.cli.postmortem", "smartops_nb.cli.serve",
                             "smartops_nb.cli.lab", "smartops_nb.cli.archive", "smartops_nb.cli.approve",
                             "smartops_nb.cli.queue", "smartops_nb.cli.postincident", "smartops_nb.cli.people"]
log = logging.getLogger("smartops")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, like every other bad input
        self.exit(EXIT_BAD_INPUT, f"smartops: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="smartops", description="SmartAmazon incident-response runbooks as Jupyter notebooks.")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug detail to stderr")
    p.add_argument("--log-format", choices=logs.FORMATS, default="text",
                   help="text (default): one line per event, control characters in values escaped; json: one "
                        "JSON object per line (time, level, logger, message and extra fields) for log shippers")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    r = sub.add_parser("runbooks", help="list every runbook with its parameters and defaults")
    r.add_argument("--json", action="store_true", help="machine-readable output")
    r.set_defaults(func=cmd_runbooks)

    r = sub.add_parser("run", help="execute a runbook headless and save the incident record",
                       description="Execute a runbook with papermill. Parameters come from YAML files (-f, later "
                                   "ones win) and -p NAME VALUE (wins over files). The record's path is the last "
                                   "line of stdout. Exit 0: ran to the end; 1: notebook failed (record saved); "
                                   "2: bad input (nothing run).")
    r.add_argument("runbook", help="runbook id (see `smartops runbooks`)")
    r.add_argument("-f", "--parameters-file", action="append", default=[], metavar="FILE",
                   help="YAML parameters file (repeatable, later files win)")
    r.add_argument("-p", "--parameter", action="append", nargs=2, default=[], metavar=("NAME", "VALUE"),
                   help="one parameter (repeatable); VALUE is parsed as YAML (numbers, true/false, [a, b])")
    from smartops_nb.cli.archive import add_location

    add_location(r)
    r.add_argument("--cell-timeout", type=int, default=600, metavar="S", help="seconds one cell may run (600)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    r.set_defaults(func=cmd_run)

    for module in EXTRA_COMMANDS:  # command groups that live beside the code they drive
        importlib.import_module(module).register(sub, _Parser)
    return p


def cmd_runbooks(args) -> int:
    rows = []
    for rb in catalog.RUNBOOKS.values():
        params = rb.defaults()
        rows.append({"id": rb.id, "title": rb.title, "severity": rb.severity,
                     "notebook": f"notebooks/{rb.notebook}" + ("" if rb.path.exists() else " (missing)"),
                     "causes": list(rb.causes), "actions": list(rb.actions), "parameters": params})
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return EXIT_OK
    for row in rows:
        print(f"{row['id']:<20} {row['severity']}  {row['title']}  [{row['notebook']}]")
        print(f"    causes:  {', '.join(row['causes'])}")
        print(f"    actions: {', '.join(row['actions'])}")
        if row["parameters"]:
            print("    parameters: " + ", ".join(f"{k}={v!r}" for k, v in row["parameters"].items()))
    return EXIT_OK


def cmd_run(args) -> int:
    from smartops_nb.records import record
    from smartops_nb.records.archive import open_archive
    from smartops_nb.execution.flow import investigate
    from smartops_nb.execution.prepare import prepare
    from smartops_nb.records.render import plan_command

    try:
        cli = {name: parse_cli_value(value) for name, value in args.parameter}
        prep = prepare(args.runbook, args.parameters_file, cli)
        archive = open_archive(args.archive, args.index)
    except ParameterError as e:
        print(f"smartops run: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"running {prep.runbook.id} ({prep.runbook.title}, {prep.runbook.severity}) ...", file=sys.stderr)
    try:
        result = investigate(prep, archive, progress=not args.no_progress, cell_timeout=args.cell_timeout)
    except record.RecordWriteError as e:
        print(f"smartops run: record not written: {e}", file=sys.stderr)
        return EXIT_FAILED
    s = result.summary
    diag = s["diagnosis"]
    print(f"status: {s['status']}" + (f" ({s['error']})" if s.get("error") else ""))
    print(f"diagnosis: {'CONFIRMED' if diag['confirmed'] else 'not confirmed'}"
          + (f" — causes: {', '.join(diag['causes'])}" if diag["causes"] else ""))
    print(f"summary: {diag['summary']}")
    for a in s.get("actions", []):
        print(f"action: {a['action']} on {a['target']}: {a['mode']}")
    for p in s.get("plans", []):
        print(f"plan: {p['id']} ({p['action']}, until {p['expires_at']}): {plan_command(p)}")
    print(f"incident: {s['incident_id']}")
    print(result.record)
    return result.exit_code


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.configure(args.log_format, verbose=args.verbose)
    for noisy in ("papermill", "blib2to3", "asyncio", "aiobotocore", "botocore", "s3fs", "procrastinate.periodic",
                  "procrastinate.blueprints"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("traitlets").setLevel(logging.ERROR)  # zmq teardown chatter at exit
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)  # a reconnect attempt per line: serve/worker say it once
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    try:  # a native abort (libzmq, libpq) leaves every thread's Python stack in the log
        faulthandler.enable()
    except (OSError, ValueError):  # stderr is not a file (main() called in-process, its output captured)
        pass
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
