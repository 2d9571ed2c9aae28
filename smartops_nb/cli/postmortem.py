"""``smartops postmortem RECORD [RECORD...] [-o FILE]``: draft the post-mortem of one incident."""
from __future__ import annotations

import sys
from pathlib import Path

from smartops_nb.contract import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK


def register(subparsers, parser_class) -> None:
    p = subparsers.add_parser(
        "postmortem", help="draft the seed's post-mortem (Markdown) from the records of one incident",
        description="Fill the seed's post-mortem template from the incident records of one incident_id "
                    "(several runs merge into one timeline). Charts are written beside the output as PNG "
                    "files. Exit 2 when the records are unreadable or of different incidents, 1 when the "
                    "output cannot be written.")
    p.add_argument("records", nargs="*", metavar="RECORD", help="record (.ipynb) paths")
    p.add_argument("--incident", metavar="INCIDENT_ID",
                   help="every record of this incident in the archive, with its plans and their fate")
    p.add_argument("--archive", metavar="DIR", help="archive folder for --incident (default $SMARTOPS_ARCHIVE "
                                                    "or ./incidents)")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="Markdown file to write (default: postmortem-<incident_id>.md in the current folder)")
    p.add_argument("--impact", metavar="TEXT", help="the impact line (else the records' `impact` parameter, "
                                                  "else left to fill in)")
    p.set_defaults(func=cmd_postmortem)


def _incident_records(incident_id: str, archive: str | None):
    """The incident's record paths (oldest first) and its plans, from the archive."""
    from smartops_nb.records.archive import IndexMissing
    from smartops_nb.records.plans import PlanStore
    from smartops_nb.records.record import archive_dir
    from smartops_nb.reports import incident, postmortem

    folder = archive_dir(archive)
    try:
        names = [name for name, _ in incident.summaries(folder, incident_id)]
    except (incident.IncidentNotFound, IndexMissing) as e:
        raise postmortem.PostmortemError(str(e)) from None
    return [folder / n for n in names], [p.to_dict() for p in PlanStore(folder).of_incident(incident_id)]


def cmd_postmortem(args) -> int:
    from smartops_nb.reports import postmortem
    from smartops_nb.records.record import _slug

    if bool(args.records) == bool(args.incident):
        print("smartops postmortem: give RECORD paths or --incident INCIDENT_ID (one of them)", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        paths, plans = list(args.records), []
        if args.incident:
            paths, plans = _incident_records(args.incident, args.archive)
        records = postmortem.one_incident([postmortem.load(p) for p in paths])
        out = Path(args.output or f"postmortem-{_slug(records[0].summary.get('incident_id') or 'incident')}.md")
        path = postmortem.write(records, out, args.impact, plans=plans)
    except postmortem.PostmortemError as e:
        print(f"smartops postmortem: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as e:  # the output (or its folder, or a chart beside it) cannot be written
        print(f"smartops postmortem: cannot write {e.filename or args.output}: {e.strerror or e}", file=sys.stderr)
        return EXIT_FAILED
    print(path)
    return EXIT_OK
