#!/usr/bin/env python
"""The full soak: ``-n`` runs (500) through one ``smartops serve`` (in-process) and ``-n`` through one
``smartops worker`` (queue mode, its own embedded PostgreSQL), each started under ``ulimit -n 256``;
prints their open descriptors and RSS every ``--every`` records, and whether they stayed flat.

    python bench/soak.py [-n 500] [--every 50] [--only serve|worker]

The suite runs the same soak shortened (tests/scenarios/test_soak.py, 150 and 100 runs). The runs are
db-pool-exhausted against services that refuse connections (tests/fixtures/soak.py says why).
Exit 1 if a process died, exited non-zero on SIGTERM, or its descriptors or RSS grew.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import postgres_server  # noqa: E402
from tests.fixtures.soak import FD_LIMIT, flat, soak  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--runs", type=int, default=500, help="runs per process (500)")
    ap.add_argument("--every", type=int, default=50, help="records between two samples (50)")
    ap.add_argument("--only", choices=("serve", "worker"), help="one of the two soaks")
    ap.add_argument("--max-minutes", type=float, default=240, help="give up on a soak after this (240)")
    args = ap.parse_args()
    bad = 0
    for kind in ("serve", "worker"):
        if args.only and kind != args.only:
            continue
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"smartops-soak-{kind}-") as tmp:
            show = lambda s: print(f"  {kind}: {s.records:4d} records  {s.fds} fds  {s.rss} MiB RSS", flush=True)  # noqa: E731
            print(f"{kind}: {args.runs} runs under ulimit -n {FD_LIMIT}", flush=True)
            if kind == "worker":
                with postgres_server("smartops-soak-queue-", max_connections=100) as pg:
                    result = soak(Path(tmp), args.runs, queue_dsn=pg.dsn(db="postgres"), every=args.every,
                                  progress=show, max_s=args.max_minutes * 60)
            else:
                result = soak(Path(tmp), args.runs, every=args.every, progress=show, max_s=args.max_minutes * 60)
        first, last = result.samples[0], result.samples[-1]
        problems = flat(result.samples)
        if not result.alive_at_end or result.exit_code != 0 or last.records < args.runs:
            problems.append(f"alive at end: {result.alive_at_end}, exit on SIGTERM: {result.exit_code}, "
                            f"records {last.records}")
        print(f"{kind}: {last.records} records in {time.monotonic() - t0:.0f} s; descriptors {first.fds} -> "
              f"{last.fds} (max {max(s.fds or 0 for s in result.samples)}), RSS {first.rss} -> {last.rss} MiB; "
              + ("FLAT" if not problems else "NOT FLAT: " + "; ".join(problems)), flush=True)
        bad += bool(problems)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
