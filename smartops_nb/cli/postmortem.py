"""``smartops postmortem RECORD [RECORD...] [-o FILE]``: draft the post-mortem of one incident."""
from __future__ import annotations

import sys
from pathlib import Path

from smartops_nb.contract import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from smartops_nb.support.reasons import flat


def register(subparsers, parser_class) -> None:
    p = subparsers.add_parser(
        "postmortem", help="draft the seed's post-mortem (Markdown) from the records of one incident",
        description="Fill the seed's post-mortem template from the incident records of one incident_id "
                    "(several runs merge into one timeline). Charts are written beside the output as PNG "
                    "files. Exit 2 when the records are unreadable or of different incidents, 1 when the "
                    "output cannot be written.")
    p.add_argument("records", nargs="*", metavar="RECORD",
                   help="record (.ipynb) paths, or names (or unique name prefixes) in the archive")
    p.add_argument("--incident", metavar="INCIDENT_ID",
                   help="every record of this incident in the archive, with its plans and their fate")
    from smartops_nb.cli.archive import add_location

    add_location(p)
    p.add_argument("-o", "--output", metavar="FILE",
                   help="Markdown file to write (default: postmortem-<incident_id>.md in the current folder)")
    p.add_argument("--impact", metavar="TEXT", help="the impact line (else the records' `impact` parameter, "
                                                  "else left to fill in)")
    p.set_defaults(func=cmd_postmortem)


def _incident_records(incident_id: str, archive: str | None, index: str | None = None):
    """The incident's record paths (oldest first), its plans, its checklist and lessons, from the archive (an ``s3://``
    archive's records fetched to local read-only copies)."""
    from smartops_nb.contract import ParameterError
    from smartops_nb.records.archive import open_archive
    from smartops_nb.records.entries import IndexMissing
    from smartops_nb.reports import incident, postmortem

    try:
        loc = open_archive(archive, index)
    except ParameterError as e:
        raise postmortem.PostmortemError(str(e)) from None
    from smartops_nb.postincident import checklist

    try:
        paths = [loc.fetch(name) for name, _ in incident.summaries(loc, incident_id)]
        plans = [p.to_dict() for p in loc.plan_store().of_incident(incident_id)]
        done, lessons = checklist.proof(loc, incident_id)
    except (incident.IncidentNotFound, IndexMissing) as e:
        raise postmortem.PostmortemError(str(e)) from None
    except Exception as e:  # the store or the index unreachable: one line, exit 1
        raise _Unreachable(f"cannot read incident {incident_id}: {flat(e)}") from None
    return paths, plans, done, lessons


def cmd_postmortem(args) -> int:
    from smartops_nb.reports import postmortem
    from smartops_nb.records.record import slug

    if bool(args.records) == bool(args.incident):
        print("smartops postmortem: give RECORD paths or --incident INCIDENT_ID (one of them)", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        paths, plans, done, lessons = _paths(args), [], [], []
        if args.incident:
            paths, plans, done, lessons = _incident_records(args.incident, args.archive, args.index)
        records = postmortem.one_incident([postmortem.load(p) for p in paths])
        out = Path(args.output or f"postmortem-{slug(records[0].summary.get('incident_id') or 'incident')}.md")
        path = postmortem.write(records, out, args.impact, plans=plans, done=done, lessons=lessons)
    except postmortem.PostmortemError as e:
        print(f"smartops postmortem: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except _Unreachable as e:
        print(f"smartops postmortem: {e}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as e:  # the output (or its folder, or a chart beside it) cannot be written
        print(f"smartops postmortem: cannot write {e.filename or args.output}: {e.strerror or e}", file=sys.stderr)
        return EXIT_FAILED
    print(path)
    return EXIT_OK


class _Unreachable(Exception):
    pass


def _paths(args) -> list[Path]:
    """Each RECORD as a local file: a path as given, else the archive's record (an ``s3://`` one fetched
    to a local read-only copy)."""
    from smartops_nb.contract import ParameterError
    from smartops_nb.records.archive import open_archive
    from smartops_nb.reports.postmortem import PostmortemError

    paths, loc = [], None
    for ref in args.records:
        if Path(ref).is_file():
            paths.append(Path(ref))
            continue
        try:
            loc = loc or open_archive(args.archive, args.index)
            paths.append(loc.resolve(ref))
        except (ParameterError, LookupError) as e:
            raise PostmortemError(str(e)) from None
        except Exception as e:  # the store or the index unreachable: one line, exit 1
            raise _Unreachable(f"cannot fetch {ref}: {flat(e)}") from None
    return paths
