"""Write each notebook's papermill ``parameters`` cell from the one declaration of its parameters.

    python tools/notebook_parameters.py           # rewrite the cells that drifted
    python tools/notebook_parameters.py --check   # exit 1 naming each drifted notebook (the suite runs this)

Runbook parameters are declared in ``smartops_nb/catalog.py`` (common and shared ones in
``smartops_nb/params.py``), the review notebook's in ``smartops_nb/reports/review.py``, the plans
notebook's in ``smartops_nb/kernel/approvals.py``. The cell is
written in papermill's annotated form, ``idle_minutes: float = 5.0  # idle age ...``, so that
``papermill --help-notebook notebooks/X.ipynb`` shows every parameter's type and help.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from smartops_nb import catalog  # noqa: E402
from smartops_nb.kernel import approvals  # noqa: E402
from smartops_nb.reports import review  # noqa: E402

HEADER = "# Generated from the declaration in {source} by tools/notebook_parameters.py: edit it there."


def declared() -> dict[Path, tuple[str, list]]:
    """notebook path -> (where it is declared, its parameters in order)."""
    out = {rb.path: ("smartops_nb/catalog.py", list(rb.parameters.values())) for rb in catalog.RUNBOOKS.values()}
    out[catalog.notebook_dir() / review.NOTEBOOK] = ("smartops_nb/reports/review.py", list(review.PARAMETERS))
    out[catalog.notebook_dir() / approvals.PLANS_NOTEBOOK] = ("smartops_nb/kernel/approvals.py",
                                                              list(approvals.PLANS_PARAMETERS))
    return out


def cell_source(source: str, params: list) -> str:
    return "\n".join([HEADER.format(source=source), *(p.line() for p in params)])


def parameters_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise SystemExit(f"a notebook needs exactly one cell tagged 'parameters', found {len(cells)}")
    return cells[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook differs")
    args = ap.parse_args(argv)
    drifted = []
    for path, (source, params) in declared().items():
        nb = nbformat.read(path, as_version=4)
        cell = parameters_cell(nb)
        want = cell_source(source, params)
        if cell.source == want:
            continue
        drifted.append(path)
        if not args.check:
            cell.source = want
            nbformat.write(nb, path)
            print(f"rewrote the parameters cell of {path.relative_to(REPO)}")
    if args.check and drifted:
        names = ", ".join(str(p.relative_to(REPO)) for p in drifted)
        print(f"parameters cells differ from their declaration: {names}; "
              f"fix with: python tools/notebook_parameters.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
