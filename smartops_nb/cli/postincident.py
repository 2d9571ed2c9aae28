"""``smartops learn INCIDENT_ID "TEXT"`` and ``smartops incident checklist INCIDENT_ID [--redo ITEM]``:
the post-incident checklist of one incident (see :mod:`smartops_nb.postincident`)."""
from __future__ import annotations

import json
import sys

from smartops_nb.contract import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK

from .approve import INCIDENT_COMMANDS, archive_of, operator_of
from .archive import add_location


def register(subparsers, parser_class) -> None:
    p = subparsers.add_parser(
        "learn", help="record a lesson of an incident for its runbook",
        description="Keep a lesson learned from an incident in the archive's index: every later run of the "
                    "runbook shows it under \"Learned from earlier incidents\" in its opening cell, and the "
                    "post-mortem lists it under Lessons Learned (the checklist's last item). Exit 2: unknown "
                    "incident or runbook, empty or too long text.")
    p.add_argument("incident_id", metavar="INCIDENT_ID")
    p.add_argument("text", metavar="TEXT", help="the lesson (one paragraph, at most 2000 characters)")
    p.add_argument("--runbook", metavar="ID", help="the runbook it is for (default: the incident's)")
    p.add_argument("--operator", metavar="NAME", help="who learned it (default $SMARTOPS_OPERATOR or $USER)")
    add_location(p)
    p.set_defaults(func=cmd_learn)
    _register_checklist(INCIDENT_COMMANDS[-1])


def _register_checklist(isub) -> None:
    """``smartops incident checklist`` (beside ``show`` and ``list``)."""
    from smartops_nb.postincident.config import ITEM_IDS

    x = isub.add_parser("checklist", help="the post-incident checklist of one incident; --redo retries an item",
                        description="Each of the seed's six post-incident items with its state (done, failed, "
                                    "open, in progress, not needed), when, by whom and its link. --redo ITEM "
                                    "carries out that item again with the post_incident: section of -f files. "
                                    "Exit 1: the item failed (the reason is shown); 2: bad input.")
    x.add_argument("incident_id", metavar="INCIDENT_ID")
    x.add_argument("--redo", metavar="ITEM", choices=ITEM_IDS, help=f"one of {', '.join(ITEM_IDS)}")
    x.add_argument("-f", "--parameters-file", action="append", default=[], metavar="FILE",
                   help="parameters files with the post_incident: (and notify:) sections")
    x.add_argument("--operator", metavar="NAME", help="who redoes it (default $SMARTOPS_OPERATOR or $USER)")
    add_location(x)
    x.add_argument("--json", action="store_true", help="machine-readable output")
    x.set_defaults(func=cmd_checklist)


def cmd_learn(args) -> int:
    from smartops_nb.contract import ParameterError
    from smartops_nb.postincident import checklist
    from smartops_nb.records.entries import IndexMissing

    try:
        lesson = checklist.learn(archive_of(args), args.incident_id, args.text, operator_of(args), args.runbook)
    except (ParameterError, IndexMissing) as e:
        print(f"smartops learn: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"lesson {lesson['id']} of incident {lesson['incident_id']} kept for runbook {lesson['runbook']}")
    return EXIT_OK


def cmd_checklist(args) -> int:
    from smartops_nb.contract import ParameterError
    from smartops_nb.params import CONFIG_SECTIONS, load_yaml_files
    from smartops_nb.postincident import checklist
    from smartops_nb.records.entries import IndexMissing

    try:
        archive = archive_of(args)
        if args.redo:
            config = {k: v for k, v in load_yaml_files(args.parameters_file).items() if k in CONFIG_SECTIONS}
            row = checklist.redo(config, archive, args.incident_id, args.redo, operator_of(args))
            failed = row["status"] == "failed"
        else:
            failed = False
        rows = checklist.state(archive, args.incident_id)
    except (ParameterError, IndexMissing, LookupError) as e:
        print(f"smartops incident checklist: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(rows, indent=2, default=str) if args.json else
          f"incident {args.incident_id}: post-incident checklist\n{checklist.text(rows)}")
    return EXIT_FAILED if failed else EXIT_OK
