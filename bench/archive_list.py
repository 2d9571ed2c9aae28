"""How fast `smartops archive list` answers over 10,000 index entries.

Generates 10,000 chained index entries (no notebooks: list reads the index only) in a temporary
archive, then prints the median of 5 calls of each query, in-process and through the CLI, next to a
floor measured in the same run: an empty SQLite query on the same file for the API, `python -c pass`
and `smartops --help` (interpreter + package import) for the CLI. Figures only, no asserts.

    python bench/archive_list.py [--entries N] [--repeat N]
"""
from __future__ import annotations

import argparse
import hashlib
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from smartops_nb.records import archive

RUNBOOKS = {"db-pool-exhausted": ["idle-connection-leak", "pool-too-small"],
            "redis-memory-full": ["no-eviction-policy", "big-keys"],
            "disk-full": ["log-growth", "core-dumps"], "high-latency": ["missing-index", "cache-miss-storm"],
            "api-down": ["process-crashed"], "failed-deployment": ["bad-image"]}


def generate(folder: Path, n: int) -> None:
    rnd = random.Random(4)
    start = time.time() - 90 * 86400
    con = archive.connect(folder)
    with archive._immediate(con):
        for i in range(n):
            runbook = rnd.choice(list(RUNBOOKS))
            causes = rnd.sample(RUNBOOKS[runbook], rnd.randint(0, 1))
            t = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + i * 90 * 86400 / n))
            name = f"{t.replace(':', '-')}_{runbook}_prod-{i % 3}.ipynb"
            row = {"name": name, "path": name, "sha256": hashlib.sha256(name.encode()).hexdigest(), "size": 50_000,
                   "runbook": runbook, "title": runbook, "severity": rnd.choice(["P1", "P2", "P3", "P4"]),
                   "environment": f"prod-{i % 3}", "incident_id": f"INC-{i // 3}",
                   "status": rnd.choice(["completed"] * 9 + ["failed"]), "confirmed": int(bool(causes)),
                   "causes": " ".join(causes), "diagnosis": f"causes {causes}", "detected_at": t, "started_at": t,
                   "finished_at": t, "mode": "investigate", "operator": "bench", "actions_executed": "[]",
                   "findings": 6}
            words = {"record": name, "findings": f"pool {rnd.randint(1, 100)}% used", "diagnosis": " ".join(causes),
                     "outputs": "step ran", "parameters": "environment=prod"}
            archive._append(con, row, words)
    con.close()


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="smartops-bench-") as tmp:
        folder = Path(tmp) / "incidents"
        t = time.perf_counter()
        generate(folder, opts.entries)
        print(f"generated {opts.entries} index entries in {time.perf_counter() - t:.1f} s "
              f"({archive.index_path(folder).stat().st_size / 1e6:.1f} MB index)\n")

        def floor_api():
            con = sqlite3.connect(archive.index_path(folder))
            con.execute("SELECT 1").fetchall()
            con.close()

        queries = {
            "list (newest 50)": {},
            "list --limit 0 (all)": {"limit": 0},
            "list --cause --since 30d": {"cause": "idle-connection-leak", "since": "30d"},
            "list --runbook --severity P1": {"runbook": "disk-full", "severity": "P1"},
        }
        floor = median_ms(floor_api, opts.repeat)
        rows = [("API: empty SQLite query (floor)", floor, 1.0, "")]
        for label, kw in queries.items():
            n = len(archive.list_records(folder, **kw))
            ms = median_ms(lambda: archive.list_records(folder, **kw), opts.repeat)
            rows.append((f"API: {label}", ms, ms / floor, n))
        count = len(archive.search(folder, "idle", limit=0))
        ms = median_ms(lambda: archive.search(folder, "idle"), opts.repeat)
        rows.append(("API: search idle (best 50)", ms, ms / floor, f"{count} match"))

        def run(*args):
            return lambda: subprocess.run([sys.executable, *args], check=True, capture_output=True)

        cli = ["-m", "smartops_nb.cli"]
        cli_floor = median_ms(run("-c", "pass"), opts.repeat)
        rows.append(("CLI: python -c pass (floor)", cli_floor, 1.0, ""))
        ms = median_ms(run(*cli, "--help"), opts.repeat)
        rows.append(("CLI: smartops --help (import)", ms, ms / cli_floor, ""))
        for label, args in (("list (newest 50)", []), ("list --limit 0 (all)", ["--limit", "0"]),
                            ("list --cause --since 30d", ["--cause", "idle-connection-leak", "--since", "30d"]),
                            ("list --json --limit 0", ["--json", "--limit", "0"])):
            ms = median_ms(run(*cli, "archive", "list", "--archive", str(folder), *args), opts.repeat)
            rows.append((f"CLI: {label}", ms, ms / cli_floor, ""))

        print(f"{'median of ' + str(opts.repeat):<36} {'ms':>9} {'x floor':>9}  rows")
        for label, ms, ratio, n in rows:
            print(f"{label:<36} {ms:>9.2f} {ratio:>9.1f}  {n}")


if __name__ == "__main__":
    main()
