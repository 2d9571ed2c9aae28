"""`smartops lab`: JupyterLab on loopback for working an incident by hand."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from smartops_nb.contract import ARCHIVE_ENV, LAB_TOKEN_ENV
from smartops_nb.support.reasons import flat

if TYPE_CHECKING:
    from smartops_nb.records.archive import Archive

HELP = ("Start JupyterLab on 127.0.0.1 with a token: the project's notebooks, parameters and incident archive "
        "in its file browser, parameters/demo.yaml preselected (a runbook run by hand takes its "
        "values from it, as `smartops run -f` would), and `smartops_nb.save_record()` / the \"Save incident "
        "record\" button writing records into the archive. Prints the URL; Ctrl-C stops it and its kernels.")


def register(subparsers, parser_class) -> None:
    p = subparsers.add_parser("lab", help="start JupyterLab on loopback with the runbooks (prints the URL)",
                              description=HELP)
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    p.add_argument("--token", default="", help="access token (default: a random one; $SMARTOPS_LAB_TOKEN)")
    p.add_argument("--root", metavar="DIR", help="folder the file browser shows (default: this folder if it has "
                                                 "notebooks/, else the installed project)")
    p.add_argument("--archive", metavar="DIR|s3://BUCKET/PREFIX",
                   help="archive for records (default $SMARTOPS_ARCHIVE or ROOT/incidents)")
    p.add_argument("--index", metavar="sqlite|DSN",
                   help="its index: sqlite (beside a folder) or a PostgreSQL DSN, required for s3:// "
                        "(default $SMARTOPS_INDEX)")
    p.add_argument("--record", metavar="RECORD", action="append", default=[],
                   help="open this record of the archive (name or unique prefix; one from s3:// is fetched to a "
                        "local read-only copy under ROOT/records-from-archive); repeatable")
    p.add_argument("-f", "--parameters-file", metavar="FILE",
                   help="parameters file runbooks read in this lab (default ROOT/parameters/demo.yaml if it "
                        "exists; '' for none: the notebooks' own parameters cells)")
    p.add_argument("--timeout", type=float, default=60, help="seconds to wait for JupyterLab to answer (60)")
    p.set_defaults(func=cmd_lab)


def cmd_lab(args) -> int:
    from smartops_nb.execution import lab

    root = Path(args.root).resolve() if args.root else lab.project_root()
    if not root.is_dir():
        print(f"smartops lab: root folder {root} does not exist", file=sys.stderr)
        return 2
    from smartops_nb.contract import ParameterError
    from smartops_nb.records.archive import open_archive

    index, refs = getattr(args, "index", None), getattr(args, "record", [])  # callers building args by hand
    try:
        if args.archive or os.environ.get(ARCHIVE_ENV):
            loc = open_archive(args.archive, index)
        else:
            loc = open_archive(root / "incidents", index)
        opened = _local_records(loc, refs, root)
    except ParameterError as e:
        print(f"smartops lab: {e}", file=sys.stderr)
        return 2
    except LookupError as e:
        print(f"smartops lab: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # the store or the index unreachable: one line
        print(f"smartops lab: cannot fetch {', '.join(refs)}: {flat(e)}", file=sys.stderr)
        return 1
    archive = Path(loc.url).resolve() if loc.folder is not None else loc.url
    if args.parameters_file is None:
        demo = root / lab.DEMO_PARAMETERS
        parameters = demo if demo.exists() else None
    else:
        parameters = Path(args.parameters_file) if args.parameters_file else None
    if parameters and not parameters.exists():
        print(f"smartops lab: parameters file not found: {parameters}", file=sys.stderr)
        return 2
    server = lab.Lab(root, archive, parameters, port=args.port, index=index or "",
                     token=args.token or os.environ.get(LAB_TOKEN_ENV, ""))
    # before start(): `kill PID` (or Ctrl-C) during start-up stops JupyterLab too, as later
    old = signal.signal(signal.SIGTERM, _interrupt)
    try:
        try:
            server.start(timeout=args.timeout)
        except (RuntimeError, TimeoutError) as e:
            print(f"smartops lab: {e}", file=sys.stderr)
            return 1
        inside = isinstance(archive, Path) and archive.is_relative_to(root)
        print(f"root:       {root}", file=sys.stderr)
        print(f"archive:    {archive}" + ("" if inside or not isinstance(archive, Path)
                                          else "  (outside the root: not in the file browser)"), file=sys.stderr)
        print(f"parameters: {parameters.resolve() if parameters else '(none: the notebooks’ parameters cells)'}",
              file=sys.stderr)
        print(f"kernel:     runbooks use python3 = {sys.executable}; new notebooks get "
              f"'{lab.KERNEL_DISPLAY_NAME}'", file=sys.stderr)
        print("Ctrl-C stops JupyterLab and its kernels.", file=sys.stderr)
        for path in opened:
            print(server.url(str(path.relative_to(root))), flush=True)
        if not opened:
            print(server.url("notebooks" if (root / "notebooks").is_dir() else ""), flush=True)
        code = server.proc.wait()
        if code != 0:  # it stopped by itself, not by us
            print(f"smartops lab: jupyter lab exited with {code}", file=sys.stderr)
            return 1
        return 0
    except KeyboardInterrupt:  # SIGINT, or SIGTERM by _interrupt: a stop asked for
        return 0
    finally:
        # a second kill must not cut the stop short (and leave JupyterLab running)
        old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            server.stop()  # by pid, its process group: a no-op if start() already stopped it
        finally:
            signal.signal(signal.SIGTERM, old)
            signal.signal(signal.SIGINT, old_int)


COPIES = "records-from-archive"


def _local_records(loc: "Archive", refs: list[str], root: Path) -> list[Path]:
    """The records asked for, as files under ``root`` (what JupyterLab can open): a folder archive's
    own files when they are under it, else read-only copies in ``ROOT/records-from-archive`` (not a
    hidden folder: JupyterLab does not serve those)."""
    import shutil

    out = []
    for ref in refs:
        path = loc.resolve(ref).resolve()
        if loc.folder is None or not path.is_relative_to(root):
            copy = root / COPIES / path.name
            copy.parent.mkdir(parents=True, exist_ok=True)
            if copy.exists():
                copy.chmod(0o644)
            shutil.copyfile(path, copy)
            copy.chmod(0o444)
            path = copy
        out.append(path)
    return out


def _interrupt(*_) -> None:
    raise KeyboardInterrupt
