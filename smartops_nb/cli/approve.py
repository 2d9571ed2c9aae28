"""``smartops approve PLAN_ID``, ``smartops deny PLAN_ID``, ``smartops incident show|list``.

A plan (a mitigation a headless run recommended) is approved from the alert: this re-runs its
runbook bound to the plan and acts only if the same cause still holds on the same target. Exit 0:
executed; 1: refused (expired, denied, already carried out, incident resolved, cause gone, target
changed) or failed, with a one-line reason; 2: bad input (unknown plan id, missing operator).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from smartops_nb.contract import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK

ARCHIVE_HELP = "archive folder (default $SMARTOPS_ARCHIVE or ./incidents)"


def _operator(args) -> str:
    return args.operator or os.environ.get("SMARTOPS_OPERATOR") or os.environ.get("USER") or ""


def register(subparsers, parser_class) -> None:
    p = subparsers.add_parser(
        "approve", help="approve a plan: carry out its mitigation once, bound to its evidence",
        description="Approve a plan that a headless run recorded (see the record's summary, `smartops incident "
                    "show`, or the alert's message). Its runbook re-runs in mitigate mode with only that action "
                    "approved, acts only if the same cause still holds on the same target, verifies the effect and "
                    "writes a record linked to the incident. Exit 0 executed; 1 refused or failed (one line says "
                    "why); 2 bad input.")
    p.add_argument("plan_id", metavar="PLAN_ID", help="the plan's id (pl-...)")
    p.add_argument("--operator", metavar="NAME", help="who approves (default $SMARTOPS_OPERATOR or $USER)")
    p.add_argument("--archive", metavar="DIR", help=ARCHIVE_HELP)
    p.add_argument("-f", "--parameters-file", action="append", default=[], metavar="FILE",
                   help="parameters files (secrets the record masks, notify: targets), as for `smartops run`")
    p.add_argument("--cell-timeout", type=int, default=600, metavar="S", help="seconds one cell may run (600)")
    p.set_defaults(func=cmd_approve)

    p = subparsers.add_parser("deny", help="close a plan without carrying it out",
                              description="Deny a pending plan: it can no longer be approved. Exit 1 if it is not "
                                          "pending any more.")
    p.add_argument("plan_id", metavar="PLAN_ID")
    p.add_argument("--reason", required=True, metavar="TEXT", help="why (kept with the plan, sent to the channels)")
    p.add_argument("--operator", metavar="NAME", help="who denies (default $SMARTOPS_OPERATOR or $USER)")
    p.add_argument("--archive", metavar="DIR", help=ARCHIVE_HELP)
    p.add_argument("-f", "--parameters-file", action="append", default=[], metavar="FILE",
                   help="parameters files with the notify: section")
    p.set_defaults(func=cmd_deny)

    i = subparsers.add_parser("incident", help="one incident across its records: show, or list the open ones",
                              description="Every record of one incident in order (firing run, plans and their "
                                          "fate, mitigation runs, confirming run), its response time against the "
                                          "seed's target and the escalations due.")
    isub = i.add_subparsers(dest="incident_command", required=True, parser_class=parser_class)
    x = isub.add_parser("show", help="one incident", description="Show one incident.")
    x.add_argument("incident_id", metavar="INCIDENT_ID")
    x.add_argument("--archive", metavar="DIR", help=ARCHIVE_HELP)
    x.add_argument("--json", action="store_true", help="machine-readable output")
    x.set_defaults(func=cmd_incident_show)
    x = isub.add_parser("list", help="incidents, newest first", description="List incidents newest first.")
    x.add_argument("--open", action="store_true", required=True,
                   help="only incidents with pending plans or a confirmed diagnosis not yet cleared")
    x.add_argument("--archive", metavar="DIR", help=ARCHIVE_HELP)
    x.add_argument("--json", action="store_true", help="machine-readable output")
    x.set_defaults(func=cmd_incident_list)


def _archive(args) -> Path:
    from smartops_nb.records.record import archive_dir

    return archive_dir(args.archive)


def _decide(command: str, call) -> tuple[object, int | None]:
    """Run an approval or denial; on failure say why in one line and give the exit code: 2 for bad
    input (no such plan, no operator), 1 for a real plan that cannot be acted on (or a record that
    could not be written)."""
    from smartops_nb.contract import ParameterError
    from smartops_nb.records.plans import PlanRefused, UnknownPlan
    from smartops_nb.records.record import RecordWriteError

    try:
        return call(), None
    except (ParameterError, UnknownPlan) as e:
        print(f"smartops {command}: {e}", file=sys.stderr)
        return None, EXIT_BAD_INPUT
    except PlanRefused as e:
        print(f"smartops {command}: refused: {e}", file=sys.stderr)
        return None, EXIT_FAILED
    except RecordWriteError as e:
        print(f"smartops {command}: the mitigating run's record was not written: {e}", file=sys.stderr)
        return None, EXIT_FAILED


def cmd_approve(args) -> int:
    from smartops_nb.execution import approve

    out, failed = _decide("approve", lambda: approve.carry_out(
        args.plan_id, _operator(args), _archive(args), files=args.parameters_file, cell_timeout=args.cell_timeout))
    if failed is not None:
        return failed
    print(f"plan {out.plan.id}: {out.status}: {out.reason}")
    if out.result is not None:
        print(out.result.record)
    return out.exit_code


def cmd_deny(args) -> int:
    from smartops_nb.execution import approve

    plan, failed = _decide("deny", lambda: approve.deny(args.plan_id, _operator(args), args.reason, _archive(args),
                                                        files=args.parameters_file))
    if failed is not None:
        return failed
    print(f"plan {plan.id}: denied by {plan.decided_by}: {plan.reason}")
    return EXIT_OK


def cmd_incident_show(args) -> int:
    from smartops_nb.records.archive import IndexMissing
    from smartops_nb.reports import incident

    try:
        inc = incident.show(_archive(args), args.incident_id)
    except (incident.IncidentNotFound, IndexMissing) as e:
        print(f"smartops incident: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(inc, indent=2, default=str) if args.json else incident.text(inc))
    return EXIT_OK


def cmd_incident_list(args) -> int:
    from smartops_nb.records.archive import IndexMissing
    from smartops_nb.reports import incident

    try:
        found = incident.open_incidents(_archive(args))
    except IndexMissing as e:
        print(f"smartops incident: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps(found, indent=2, default=str))
        return EXIT_OK
    for inc in found:
        pending = f" · pending plans: {', '.join(inc['pending_plans'])}" if inc["pending_plans"] else ""
        print(f"{inc['incident_id']}  [{inc['severity']}] {inc['runbook']} ({inc['environment']}) "
              f"{inc['status']} since {inc['detected_at']}{pending}")
    return EXIT_OK
