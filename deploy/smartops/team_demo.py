#!/usr/bin/env python
"""Team mode in one command: a queue, two workers, one `serve`, an alert, its record.

    .venv/bin/python deploy/smartops/team_demo.py

Starts, on free loopback ports in a temporary folder: the SmartAmazon sandbox (with a connection
leak injected), an embedded PostgreSQL for the queue, `smartops worker` twice and
`smartops serve --queue`; posts one Alertmanager notification (PostgresConnectionsNearLimit), waits
(bounded) for the record, prints `smartops queue status` and the record's diagnosis, and stops
everything it started.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import nbformat  # noqa: E402
import yaml  # noqa: E402

from smartops_nb.waiting import until  # noqa: E402
from smartops_sandbox import Sandbox  # noqa: E402
from smartops_sandbox.postgres_server import PostgresServer  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def smartops(*args: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "smartops_nb.cli", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=open(log, "w"), start_new_session=True,
                            env={**os.environ, "SMARTOPS_SERVE_TOKEN": ""})


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="smartops-team-demo-"))
    sandbox = Sandbox(tmp / "sandbox", free_port(), free_port(), free_port())
    queue_db = PostgresServer(tmp / "queue" / "data", free_port(), log_path=tmp / "queue" / "postgres.log")
    procs: list[subprocess.Popen] = []
    try:
        print("starting the sandbox and the queue's PostgreSQL ...", flush=True)
        sandbox.up(timeout=90)
        queue_db.start(timeout=60)
        dsn = queue_db.dsn(db="postgres")
        (tmp / "base.yaml").write_text(yaml.safe_dump({**sandbox.params(), "mode": "investigate",
                                                       "idle_minutes": 0.02}))
        archive, port = tmp / "incidents", free_port()
        common = ["--queue", dsn, "--routes", str(REPO / "parameters" / "routes.yaml"), "-f", str(tmp / "base.yaml")]
        common += ["--archive", str(archive)]  # serve's episode claims and the workers' records: one archive
        for i in (1, 2):
            procs.append(smartops("worker", *common, "--concurrency", "1", log=tmp / f"worker-{i}.log"))
        procs.append(smartops("serve", *common, "--port", str(port), log=tmp / "serve.log"))
        healthz = f"http://127.0.0.1:{port}/healthz"

        def up() -> bool:
            try:
                with urllib.request.urlopen(healthz, timeout=3):
                    return True
            except OSError:
                return False

        if not until(up, 60, 0.3):
            raise SystemExit("serve did not come up:\n" + (tmp / "serve.log").read_text()[-2000:])
        print(f"serve --queue on :{port}, 2 workers; injecting a connection leak and posting the alert", flush=True)
        sandbox.fault("connection-leak")
        time.sleep(2)  # let the leaked connections age past idle_minutes (0.02 min)
        alert = {"status": "firing", "labels": {"alertname": "PostgresConnectionsNearLimit", "env": "sandbox"},
                 "annotations": {}, "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "fingerprint": "demo1"}
        body = json.dumps({"version": "4", "status": "firing", "alerts": [alert]}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/alerts", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            print(f"POST /alerts -> {r.status} {r.read().decode()}")
        records = until(lambda: sorted(archive.glob("*.ipynb")), 180, 0.5)
        if not records:
            raise SystemExit("no record within 180 s; see " + str(tmp))
        time.sleep(1)  # the worker acknowledges the job just after writing the record
        print(subprocess.run([sys.executable, "-m", "smartops_nb.cli", "queue", "status", "--queue", dsn],
                             cwd=REPO, capture_output=True, text=True, timeout=60).stdout)
        s = nbformat.read(records[0], as_version=4).metadata["smartops"]
        print(f"record {records[0].name}: incident {s['incident_id']}, {s['status']}, "
              f"{'CONFIRMED ' + ', '.join(s['diagnosis']['causes']) if s['diagnosis']['confirmed'] else 'not confirmed'}"
              f"; run by worker {s['queue']['worker']} (job {s['queue']['job']}, attempt {s['queue']['attempt']})")
        return 0
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        queue_db.stop()
        sandbox.down()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
