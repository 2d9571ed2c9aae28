"""checks/api_down.diagnose as a table: /health, workload, memory and database findings in, causes out.

Each cause, and the traps: a restart while /health answers (no crash), memory high but under
the threshold, a killed-for-memory container (out-of-memory, not also container-crashed), the
database's state unknown, /health failing with nothing else confirmed."""
from __future__ import annotations

import json
from typing import Any

import pytest

from smartops_nb.checks import api_down as ad
from tests.unit.checks import assert_diagnosis, at, failed

MIB = ad.MIB


def http(status: int | None = 200, database: str | None = "ok") -> dict[str, Any]:
    body = json.dumps({"status": "ok", "database": database}) if database is not None else ""
    return {"url": "http://api/health", "status": status, "latency_ms": 4, "body": body if status else "",
            "error": None if status else "connection refused"}


def workload(running: bool = True, status: str = "running", exit_code: int | None = None, restarts: int = 0,
             oom: bool = False, inferred: bool = False, usage_mib: float | None = 100, limit_mib: float | None = 512,
             exists: bool = True, name: str = "api") -> dict[str, Any]:
    return {"name": name, "exists": exists, "running": running, "status": status, "exit_code": exit_code,
            "restarts": restarts, "oom_killed": oom,
            "memory_usage_bytes": None if usage_mib is None else int(usage_mib * MIB),
            "memory_limit_bytes": None if limit_mib is None else int(limit_mib * MIB),
            "detail": {"oom_inferred": inferred}}


DB_UP = workload(name="db")


def findings(h: dict, st: dict | None, db: dict | None = DB_UP, warn_pct: float = 90.0) -> list:
    if st is None:   # the platform did not answer: both steps that read it failed
        out = [failed(ad.Step.WORKLOAD), failed(ad.Step.MEMORY)]
    else:
        out = [at(ad.Step.WORKLOAD, ad.check_workload(st)),
               at(ad.Step.MEMORY, ad.check_memory(ad.memory(st), warn_pct))]
    return [at(ad.Step.HEALTH, ad.check_health(h)), *out, at(ad.Step.DATABASE, ad.check_database(h, db))]


CRASHED = dict(running=False, status="exited", exit_code=1, restarts=3, usage_mib=None)
OOM_KILLED = dict(running=False, status="exited", exit_code=137, oom=True, usage_mib=None)

CASES = {
    "healthy": (http(200), workload(), DB_UP, [], "API down not confirmed"),
    # ---- each cause
    "container exited": (http(None), workload(**CRASHED), DB_UP, ["container-crashed"], "restart-api"),
    "container removed": (http(None), workload(exists=False, running=False, status="missing", usage_mib=None),
                          DB_UP, ["container-crashed"], "does not exist"),
    "restarting and /health failing": (http(503, database=None), workload(restarts=2), DB_UP,
                                       ["container-crashed"], "restarted 2 times"),
    "killed for memory": (http(None), workload(**OOM_KILLED), DB_UP, ["out-of-memory"], "killed for memory"),
    "memory-cgroup kill inferred from exit 137": (
        http(None), workload(**OOM_KILLED, inferred=True), DB_UP, ["out-of-memory"], "memory-cgroup kill"),
    "about to be killed for memory": (http(200), workload(usage_mib=500), DB_UP, ["out-of-memory"],
                                      "about to be killed"),
    "running near the limit after a crash": (
        http(None), workload(status="running", exit_code=1, usage_mib=500), DB_UP,
        ["out-of-memory", "container-crashed"], "raise the limit"),
    "API says its database is down": (http(503, database="error: connection refused"), workload(), DB_UP,
                                      ["database-unreachable"], "cannot reach its database"),
    "database container exited": (http(None), workload(), workload(name="db", **CRASHED),
                                   ["database-unreachable"], "restart-database"),
    # ---- traps: a symptom without its cause
    "restarted once, /health answers": (http(200), workload(restarts=1), DB_UP, [], "not confirmed"),
    "memory high under the threshold": (http(200), workload(usage_mib=400), DB_UP, [], "not confirmed"),
    "/health fails, nothing else confirmed": (http(500, database=None), workload(), DB_UP, [],
                                               "no cause was confirmed"),
    "database state unknown, API silent": (http(None), workload(), {"error": "podman: timeout"}, [],
                                           "no cause was confirmed"),
    "workload state not read": (http(200), None, DB_UP, [], "API down not confirmed"),
    "stopped cleanly, no memory figure": (http(None), workload(running=False, status="exited", exit_code=0,
                                                               usage_mib=None), DB_UP,
                                          ["container-crashed"], "api is exited, last exit code 0"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_diagnose(case):
    h, st, db, causes, says = CASES[case]
    assert_diagnosis(ad.diagnose, findings(h, st, db), None, causes, says)


def test_an_oom_kill_is_not_also_a_crash():
    d = ad.diagnose(findings(http(None), workload(**OOM_KILLED, restarts=2)), None)
    assert d.causes == ["out-of-memory"]
    assert "container-crashed" not in d.summary


def test_database_reachability_unknown_is_a_warning_naming_why():
    f = ad.check_database(http(None), {"error": "podman: timeout"})
    assert f.status == "warn" and "the platform did not answer: podman: timeout" in f.summary
