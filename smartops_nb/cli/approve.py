"""``smartops approve PLAN_ID``, ``smartops deny PLAN_ID``, ``smartops incident show|list``.

A plan (a mitigation a headless run recommended) is approved from the alert: this re-runs its
runbook bound to the plan and acts only if the same cause still holds on the same target; with a
queue (``--queue``/``$SMARTOPS_QUEUE``) a worker does it and this waits for the outcome. Exit 0:
executed (or queued, with ``--no-wait``); 1: refused (expired, denied, already carried out, incident
resolved, cause gone, target changed) or failed, with a one-line reason; 2: bad input (unknown plan
id, missing operator; an unknown, expired or revoked ``$SMARTOPS_TOKEN``); 3: queued and not finished
within ``--wait``, or the first of two approvals the policy's two-person rule asks for.

Who approves: the user of ``$SMARTOPS_TOKEN`` (a personal token, ``smartops token create``) when it is
set, else the typed ``--operator`` / ``$SMARTOPS_OPERATOR`` / OS user. The policy file in force
(``--policy``, ``$SMARTOPS_POLICY`` or ``parameters/policy.yaml``) says whether they may.
"""
from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING

from smartops_nb.contract import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, EXIT_PENDING, QUEUE_ENV

from .archive import add_location

if TYPE_CHECKING:
    from smartops_nb.records.archive import Archive


TOKEN_ENV = "SMARTOPS_TOKEN"


def operator_of(args, archive: Archive | None = None):
    """The caller: the identity ``$SMARTOPS_TOKEN`` proves (Unauthorized if it does not), else the typed name."""
    token = os.environ.get(TOKEN_ENV)
    if token:
        from smartops_nb.people.tokens import Tokens

        return Tokens(archive if archive is not None else archive_of(args)).identity(token)
    return getattr(args, "operator", None) or os.environ.get("SMARTOPS_OPERATOR") or os.environ.get("USER") or ""


def policy_of(args):
    from smartops_nb.people import policy

    return policy.load(getattr(args, "policy", None))


def add_policy(p) -> None:
    p.add_argument("--policy", metavar="FILE", help="the policy file (default $SMARTOPS_POLICY, else "
                                                    "parameters/policy.yaml if present; none: no checks)")


def register(subparsers, parser_class) -> None:
    add_approve(subparsers)
    _add_deny_and_incident(subparsers, parser_class)


def add_approve(subparsers) -> None:
    """The ``approve`` sub-command (alone: :func:`approve_here` parses with it)."""
    p = subparsers.add_parser(
        "approve", help="approve a plan: carry out its mitigation once, bound to its evidence",
        description="Approve a plan that a headless run recorded (see the record's summary, `smartops incident "
                    "show`, or the alert's message). Its runbook re-runs in mitigate mode with only that action "
                    "approved, acts only if the same cause still holds on the same target, verifies the effect and "
                    "writes a record linked to the incident. Exit 0 executed; 1 refused or failed (one line says "
                    "why); 2 bad input.")
    p.add_argument("plan_id", metavar="PLAN_ID", help="the plan's id (pl-...)")
    p.add_argument("--operator", metavar="NAME", help="who approves where no $SMARTOPS_TOKEN is set "
                                                      "(default $SMARTOPS_OPERATOR or $USER)")
    add_location(p)
    add_policy(p)
    p.add_argument("-f", "--parameters-file", action="append", default=[], metavar="FILE",
                   help="parameters files (secrets the record masks, notify: targets), as for `smartops run`")
    p.add_argument("--cell-timeout", type=int, default=600, metavar="S", help="seconds one cell may run (600)")
    p.add_argument("--queue", metavar="DSN", default=os.environ.get(QUEUE_ENV),
                   help=f"hand the approved plan to the workers of this queue (default ${QUEUE_ENV}); "
                        "without one it is carried out here")
    p.add_argument("--wait", type=float, default=1800, metavar="S",
                   help="with a queue: seconds to wait for the outcome (1800); exit 3 if it is not known by then")
    p.add_argument("--no-wait", action="store_true", help="with a queue: exit 0 once the job is queued")
    p.set_defaults(func=cmd_approve)


def _add_deny_and_incident(subparsers, parser_class) -> None:
    p = subparsers.add_parser("deny", help="close a plan without carrying it out",
                              description="Deny a pending plan: it can no longer be approved. Exit 1 if it is not "
                                          "pending any more.")
    p.add_argument("plan_id", metavar="PLAN_ID")
    p.add_argument("--reason", required=True, metavar="TEXT", help="why (kept with the plan, sent to the channels)")
    p.add_argument("--operator", metavar="NAME", help="who denies where no $SMARTOPS_TOKEN is set "
                                                      "(default $SMARTOPS_OPERATOR or $USER)")
    add_location(p)
    add_policy(p)
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
    add_location(x)
    x.add_argument("--json", action="store_true", help="machine-readable output")
    x.set_defaults(func=cmd_incident_show)
    x = isub.add_parser("list", help="incidents, newest first", description="List incidents newest first.")
    x.add_argument("--open", action="store_true", required=True,
                   help="only incidents with pending plans or a confirmed diagnosis not yet cleared")
    add_location(x)
    x.add_argument("--json", action="store_true", help="machine-readable output")
    x.set_defaults(func=cmd_incident_list)
    INCIDENT_COMMANDS.append(isub)


#: ``smartops incident``'s sub-commands, for the modules that add their own (``incident checklist``).
INCIDENT_COMMANDS: list = []


def archive_of(args):
    """The archive the options name (raises ParameterError, exit 2, for a pair that cannot work)."""
    from smartops_nb.records.archive import open_archive

    return open_archive(args.archive, args.index)


def _decide(command: str, call) -> tuple[object, int | None]:
    """Run an approval or denial; on failure say why in one line and give the exit code: 2 for bad
    input (no such plan, no operator), 1 for a real plan that cannot be acted on (or a record that
    could not be written)."""
    from smartops_nb.contract import ParameterError
    from smartops_nb.people.identity import Forbidden, Unauthorized
    from smartops_nb.records.plans import PlanRefused, UnknownPlan
    from smartops_nb.records.record import RecordWriteError

    try:
        return call(), None
    except Unauthorized as e:
        print(f"smartops {command}: unauthorized: {e} (${TOKEN_ENV})", file=sys.stderr)
        return None, EXIT_BAD_INPUT
    except (ParameterError, UnknownPlan) as e:
        print(f"smartops {command}: {e}", file=sys.stderr)
        return None, EXIT_BAD_INPUT
    except (PlanRefused, Forbidden) as e:
        print(f"smartops {command}: refused: {e}", file=sys.stderr)
        return None, EXIT_FAILED
    except RecordWriteError as e:
        print(f"smartops {command}: the mitigating run's record was not written: {e}", file=sys.stderr)
        return None, EXIT_FAILED


def cmd_approve(args) -> int:
    """Approve; with a queue, a worker carries it out and this waits for the outcome (progress on stderr)."""
    from smartops_nb.jobs import approvals
    from smartops_nb.execution.approve import QUEUED

    archive, failed = _decide("approve", lambda: archive_of(args))
    if failed is not None:
        return failed
    out, failed = _decide("approve", lambda: approvals.decide(
        args.plan_id, operator_of(args, archive), archive, queue=args.queue, files=args.parameters_file,
        cell_timeout=args.cell_timeout, policy=policy_of(args)))
    if failed is not None:
        return failed
    if out.status == QUEUED:
        print(f"plan {out.plan.id}: approved by {out.plan.decided_by}; queued as job {out.job_id} "
              f"({out.plan.action} on {out.plan.target})", flush=True)
        return EXIT_OK if args.no_wait else _wait_for_worker(args, archive, out.plan)
    print(f"plan {out.plan.id}: {out.status}: {out.reason}")
    if out.result is not None:
        print(out.result.record)
    return out.exit_code


def _wait_for_worker(args, archive, queued) -> int:
    """The queued plan's outcome once a worker has carried it out (exit 3 if not within ``--wait``)."""
    from smartops_nb.jobs import approvals
    from smartops_nb.records.plans import EXECUTED, FINAL

    def tick(plan, waited: float) -> None:
        if int(waited) % 10 == 0:
            print(f"smartops approve: {plan.id} {plan.state}, waiting for a worker ({waited:.0f} s)", file=sys.stderr)

    plan = approvals.wait_for_outcome(archive, queued.id, args.wait, tick=tick)
    if plan.status not in FINAL:
        print(f"plan {plan.id}: {plan.state} after {args.wait:.0f} s; its outcome will be in "
              f"`smartops incident show {plan.incident_id}`", file=sys.stderr)
        return EXIT_PENDING
    print(f"plan {plan.id}: {plan.status}: {plan.reason}")
    if plan.outcome_record:
        print(plan.outcome_record)
    return EXIT_OK if plan.status == EXECUTED else EXIT_FAILED


def approve_here(plan_id: str, operator: str, archive) -> tuple[int, str]:
    """``smartops approve PLAN_ID --operator NAME --archive ARCHIVE`` in this process, for the plans
    notebook's button (:class:`smartops_nb.kernel.approvals.PlanApproval`): the command's own defaults
    from the environment (``$SMARTOPS_TOKEN``, ``$SMARTOPS_QUEUE``, ``$SMARTOPS_POLICY``, ``$SMARTOPS_INDEX``);
    its exit code and the lines it printed."""
    import argparse
    import contextlib
    import io

    parser = argparse.ArgumentParser(prog="smartops")
    add_approve(parser.add_subparsers(dest="command", required=True))
    said = io.StringIO()
    with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
        try:
            args = parser.parse_args(["approve", plan_id, f"--operator={operator}", f"--archive={archive}"])
            code = args.func(args)
        except SystemExit as e:  # a bad argument: argparse said why
            code = e.code if isinstance(e.code, int) else EXIT_BAD_INPUT
    return code, said.getvalue()


def cmd_deny(args) -> int:
    from smartops_nb.execution import approve

    plan, failed = _decide("deny", lambda: approve.deny(args.plan_id, operator_of(args), args.reason, archive_of(args),
                                                        files=args.parameters_file, policy=policy_of(args)))
    if failed is not None:
        return failed
    print(f"plan {plan.id}: denied by {plan.decided_by}: {plan.reason}")
    return EXIT_OK


def cmd_incident_show(args) -> int:
    from smartops_nb.records.entries import IndexMissing
    from smartops_nb.reports import incident

    from smartops_nb.contract import ParameterError

    try:
        inc = incident.show(archive_of(args), args.incident_id)
    except (incident.IncidentNotFound, IndexMissing, ParameterError) as e:
        print(f"smartops incident: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(inc, indent=2, default=str) if args.json else incident.text(inc))
    return EXIT_OK


def cmd_incident_list(args) -> int:
    from smartops_nb.records.entries import IndexMissing
    from smartops_nb.reports import incident

    from smartops_nb.contract import ParameterError

    try:
        found = incident.open_incidents(archive_of(args))
    except (IndexMissing, ParameterError) as e:
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
