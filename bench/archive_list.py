"""How fast `smartops archive list` answers over 10,000 index entries, SQLite and PostgreSQL side by side.

Generates 10,000 chained index entries (no notebooks: list reads the index only) in a temporary
archive, then prints the median of 5 calls of each query, in-process and through the CLI, next to a
floor measured in the same run: an empty SQLite query on the same file for the API, `python -c pass`
and `smartops --help` (interpreter + package import) for the CLI. Figures only, no asserts.

``--postgres`` adds the team index: the same entries in a PostgreSQL (the sandbox's embedded server,
started in a temporary folder) and the same queries against it (floor: ``SELECT 1`` on a new
connection). ``--s3`` adds the time a run spends writing its record: a 60 kB record written through
:meth:`Archive.write` into the folder archive and into ``s3://`` (a SeaweedFS started for the
run) + PostgreSQL.

    python bench/archive_list.py [--entries N] [--repeat N] [--postgres] [--s3]
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

from smartops_nb.records import index_sqlite
from smartops_nb.records.archive import Archive, open_archive

RUNBOOKS = {"db-pool-exhausted": ["idle-connection-leak", "pool-too-small"],
            "redis-memory-full": ["no-eviction-policy", "big-keys"],
            "disk-full": ["log-growth", "core-dumps"], "high-latency": ["missing-index", "cache-miss-storm"],
            "api-down": ["process-crashed"], "failed-deployment": ["bad-image"]}


def generate(folder: Path, n: int) -> None:
    rnd = random.Random(4)
    start = time.time() - 90 * 86400
    con = index_sqlite.connect(folder)
    with index_sqlite.immediate(con):
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
            index_sqlite.append_entry(con, row, words)
    con.close()


def generate_postgres(dsn: str, folder: Path) -> None:
    """Copy the SQLite index's entries (same rows, same chain) into PostgreSQL with COPY: the bench
    measures reading; writing 100,000 entries one append at a time would measure nothing useful."""
    import psycopg

    from smartops_nb.records import entries, index_postgres

    with index_postgres.PostgresIndex(dsn).appending():
        pass  # creates the schema
    src = sqlite3.connect(index_sqlite.index_path(folder))
    src.row_factory = sqlite3.Row
    cols = ("seq",) + entries.ROW_COLUMNS
    with psycopg.connect(dsn, autocommit=False) as con:
        con.execute(f"SET search_path TO {index_postgres.SCHEMA}")
        with con.cursor().copy(f"COPY records ({', '.join(cols)}) FROM STDIN") as cp:
            for r in src.execute(f"SELECT {', '.join(cols)} FROM records ORDER BY seq"):
                cp.write_row(tuple(r))
        with con.cursor().copy("COPY record_causes (cause, seq) FROM STDIN") as cp:
            for r in src.execute("SELECT cause, seq FROM record_causes"):
                cp.write_row(tuple(r))
        con.execute("CREATE TEMP TABLE words (seq bigint, record text, findings text, diagnosis text, outputs text, "
                    "parameters text)")
        with con.cursor().copy("COPY words FROM STDIN") as cp:
            for r in src.execute("SELECT rowid, record, findings, diagnosis, outputs, parameters FROM records_fts"):
                cp.write_row(tuple(r))
        doc = index_postgres.SEARCH_DOC.replace("%(", "").replace(")s", "")
        con.execute(f"INSERT INTO records_fts (seq, body, doc) SELECT seq, concat_ws(E'\\n', record, findings, "
                    f"diagnosis, outputs, parameters), {doc} FROM words")
        con.execute("SELECT setval(pg_get_serial_sequence('records', 'seq'), (SELECT max(seq) FROM records))")
        con.commit()
        con.autocommit = True
        con.execute("VACUUM ANALYZE records")
        con.execute("VACUUM ANALYZE records_fts")
        con.execute("VACUUM ANALYZE record_causes")
    src.close()


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


QUERIES = {
    "list (newest 50)": {},
    "list --limit 0 (all)": {"limit": 0},
    "list --cause --since 30d": {"cause": "idle-connection-leak", "since": "30d"},
    "list --runbook --severity P1": {"runbook": "disk-full", "severity": "P1"},
}
CLI_QUERIES = (("list (newest 50)", []),
               ("list --cause --since 30d", ["--cause", "idle-connection-leak", "--since", "30d"]),
               ("list --runbook --severity P1", ["--runbook", "disk-full", "--severity", "P1"]),
               ("search idle", None))


def api_rows(target: Archive, label: str, floor: float, repeat: int) -> list[tuple]:
    rows = []
    for name, kw in QUERIES.items():
        n = len(target.list(**kw))
        ms = median_ms(lambda: target.list(**kw), repeat)
        rows.append((f"API {label}: {name}", ms, ms / floor, n))
    count = len(target.search("idle", limit=0))
    ms = median_ms(lambda: target.search("idle"), repeat)
    rows.append((f"API {label}: search idle (best 50)", ms, ms / floor, f"{count} match"))
    return rows


def cli_rows(location: list[str], label: str, floor: float, repeat: int) -> list[tuple]:
    rows = []
    for name, args in CLI_QUERIES:
        argv = ["archive", "search", "idle"] if args is None else ["archive", "list", *args]
        ms = median_ms(run(*CLI, *argv, *location), repeat)
        rows.append((f"CLI {label}: {name}", ms, ms / floor, ""))
    return rows


CLI = ["-m", "smartops_nb.cli"]


def run(*args):
    return lambda: subprocess.run([sys.executable, *args], check=True, capture_output=True)


def write_times(tmp: Path, dsn: str, repeat: int) -> list[tuple]:
    """Median time of :meth:`Archive.write` of one 60 kB record: folder + SQLite vs s3:// + PostgreSQL."""
    import os

    import nbformat

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.fixtures.seaweedfs import SeaweedFS

    def record(i: int):
        nb = nbformat.v4.new_notebook()
        nb.cells.append(nbformat.v4.new_code_cell("show()", outputs=[
            nbformat.v4.new_output("stream", name="stdout", text="x" * 60_000)]))
        t = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + i))
        summary = {"schema": 1, "runbook": "db-pool-exhausted", "title": "bench", "severity": "P1",
                   "environment": "bench", "incident_id": f"INC-W{i}", "started_at": t, "finished_at": t,
                   "status": "completed", "diagnosis": {"confirmed": False, "causes": []}, "findings": []}
        nb.metadata["smartops"] = summary
        return nb, summary

    server = SeaweedFS(tmp / "seaweedfs")
    server.start()
    try:
        os.environ.update(server.env())
        os.environ["SMARTOPS_STATE_DIR"] = str(tmp / "state")
        counter = iter(range(10_000))
        out = []
        floor_ms = None
        for label, target in (("folder + SQLite", open_archive(tmp / "write-folder")),
                              ("s3:// + PostgreSQL", open_archive("s3://bench/records", dsn))):
            put = lambda: target.write(*record(next(counter)))  # noqa: E731
            put()  # the first write creates the index / bucket
            ms = median_ms(put, repeat)
            floor_ms = floor_ms or ms
            out.append((f"write one record: {label}", ms, ms / floor_ms, ""))
        return out
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--postgres", action="store_true", help="also the PostgreSQL index (embedded server)")
    ap.add_argument("--s3", action="store_true", help="also the time to write a record to s3:// + PostgreSQL "
                                                      "(SeaweedFS; implies --postgres)")
    opts = ap.parse_args()
    opts.postgres = opts.postgres or opts.s3
    with tempfile.TemporaryDirectory(prefix="smartops-bench-") as tmp:
        folder = Path(tmp) / "incidents"
        t = time.perf_counter()
        generate(folder, opts.entries)
        print(f"generated {opts.entries} index entries in {time.perf_counter() - t:.1f} s "
              f"({index_sqlite.index_path(folder).stat().st_size / 1e6:.1f} MB index)\n")

        def floor_api():
            con = sqlite3.connect(index_sqlite.index_path(folder))
            con.execute("SELECT 1").fetchall()
            con.close()

        floor = median_ms(floor_api, opts.repeat)
        rows = [("API: empty SQLite query (floor)", floor, 1.0, "")]
        rows += api_rows(open_archive(folder), "SQLite", floor, opts.repeat)
        cli_floor = median_ms(run("-c", "pass"), opts.repeat)
        rows.append(("CLI: python -c pass (floor)", cli_floor, 1.0, ""))
        ms = median_ms(run(*CLI, "--help"), opts.repeat)
        rows.append(("CLI: smartops --help (import)", ms, ms / cli_floor, ""))
        rows += cli_rows(["--archive", str(folder)], "SQLite", cli_floor, opts.repeat)
        server = None
        try:
            if opts.postgres:
                from smartops_sandbox.postgres_server import PostgresServer

                from smartops_nb.execution.lab import free_port

                pg_dir = Path(tempfile.mkdtemp(prefix="smartops-bench-pg-"))
                server = PostgresServer(pg_dir / "data", free_port(), log_path=pg_dir / "postgres.log")
                server.start()
                import psycopg

                with psycopg.connect(server.dsn(db="postgres"), autocommit=True) as c:
                    c.execute("CREATE DATABASE bench")
                dsn = server.dsn(db="bench")
                t = time.perf_counter()
                generate_postgres(dsn, folder)
                print(f"copied them into PostgreSQL in {time.perf_counter() - t:.1f} s")
                team = open_archive(str(folder), dsn)  # the folder's names, the PostgreSQL index

                def floor_pg():
                    with psycopg.connect(dsn) as c:
                        c.execute("SELECT 1").fetchall()

                pg_floor = median_ms(floor_pg, opts.repeat)
                rows.append(("API: SELECT 1 on a new PG connection", pg_floor, 1.0, ""))
                rows += api_rows(team, "PostgreSQL", pg_floor, opts.repeat)
                rows += cli_rows(["--archive", str(folder), "--index", dsn], "PostgreSQL", cli_floor, opts.repeat)
                if opts.s3:
                    rows += write_times(Path(tmp), dsn, opts.repeat)
        finally:
            if server is not None:
                server.stop()
                import shutil

                shutil.rmtree(pg_dir, ignore_errors=True)

        print(f"{'median of ' + str(opts.repeat):<36} {'ms':>9} {'x floor':>9}  rows")
        for label, ms, ratio, n in rows:
            print(f"{label:<36} {ms:>9.2f} {ratio:>9.1f}  {n}")


if __name__ == "__main__":
    main()
