#!/usr/bin/env python
"""What a warm run cannot go below: the cost of one more cell and of one chart, on a pool's warm kernel.

    python bench/cell_overhead.py [-n 5]

A warm runbook run is its warm floor (an empty notebook), plus one kernel round trip per cell, plus
its charts, plus its own queries. This measures the two fixed costs, medians of ``-n`` runs, each on
a fresh warm kernel (``benchlib.Warm``) through the runner's papermill engine (the one a served run
uses: no notebook writes during the run):

* **per cell**: a notebook of 21 empty cells against one of 1, per extra cell;
* **per chart**: a cell drawing one of :mod:`smartops_nb.kernel.plots`' charts (through the kernel's
  inline backend, PNG, ``bbox_inches="tight"``) against the same cell without it.

No sandbox needed. Figures only, no asserts; ``bench/PROFILE.md`` says what they explain.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import Warm, empty_notebook, log, notebook, warm_floor  # noqa: E402

SETUP = "from smartops_nb.kernel import plots\nimport pandas as pd"
#: Charts as the runbooks draw them (db-pool-exhausted's two, high-latency's line chart), fixed data.
CHARTS = {
    "usage against limit (1 axes)": (
        "plots.usage_against_limit({'active': 3, 'idle': 40, 'idle > 5 min': 50}, 100, 3, "
        "'Client connections against max_connections', warn_pct=90)"),
    "breakdown panels (3 axes)": (
        "plots.breakdown_panels({k: pd.DataFrame({k: [f'{k}-{i}' for i in range(4)], 'connections': [9, 5, 3, 1]}) "
        "for k in ('state', 'application', 'client')}, 'Application connections')"),
    "lines (1 axes, 60 points)": (
        "plots.lines(pd.DataFrame({'t_s': [i / 6 for i in range(60)], 'hits': range(60), 'misses': range(0, 120, 2)}), "
        "'t_s', ['hits', 'misses'], 'Cache lookups in the window', ylabel='lookups')"),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=5, help="runs per measurement; medians are reported (5)")
    args = ap.parse_args(argv)
    warm = Warm()
    with tempfile.TemporaryDirectory(prefix="smartops-cells-") as tmp:
        tmp = Path(tmp)
        out = tmp / "out.ipynb"

        def timed(nb: Path) -> float:
            return warm.timed(lambda k: warm_floor(k, nb, out, runner_engine=True), args.n)[0]

        log("per cell")
        one, many = timed(empty_notebook(tmp / "1.ipynb")), timed(notebook(tmp / "21.ipynb", *["pass"] * 21))
        log("per chart")
        base = timed(notebook(tmp / "base.ipynb", SETUP, "pass"))
        charts = {name: timed(notebook(tmp / f"chart{i}.ipynb", SETUP, code)) - base
                  for i, (name, code) in enumerate(CHARTS.items())}
    print(f"\nwarm kernel fixed costs: medians of {args.n}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print(f"empty notebook, 1 cell (the warm floor through the runner's engine)  {one * 1000:7.1f} ms")
    print(f"empty notebook, 21 cells                                           {many * 1000:7.1f} ms")
    print(f"  one more cell                                                    {(many - one) / 20 * 1000:7.1f} ms")
    for name, cost in charts.items():
        print(f"one chart: {name:<55} {cost * 1000:7.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
