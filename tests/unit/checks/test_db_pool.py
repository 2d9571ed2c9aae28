"""checks/db_pool.diagnose as a table: login, usage and idle findings in, cause codes out.

Each cause, and the traps: connections near the limit without an idle leak, many long-idle
connections on a quiet server (an idle pool, not a leak), pool-exhausted lines in the API log
while usage is low (logs keep history), a failed login that is not a slot refusal."""
from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from smartops_nb.checks import db_pool as dp
from smartops_nb.probes.postgres import LoginAttempt
from tests.unit.checks import assert_diagnosis, at, failed

PARAMS = SimpleNamespace(idle_minutes=5.0)
LIMITS = {"max_connections": 20, "superuser_reserved_connections": 3}


def clients(idle_old: int = 0, active: int = 0, idle_new: int = 0, runbook: int = 1) -> pd.DataFrame:
    """pg_stat_activity client backends: ``idle_old`` idle for an hour, ``idle_new`` for 10 s."""
    rows = ([("idle", 3600.0, "leaky-app")] * idle_old + [("active", 1.0, "api")] * active
            + [("idle", 10.0, "api")] * idle_new)
    df = pd.DataFrame([{"pid": 100 + i, "state": s, "seconds_in_state": age, "application_name": app,
                        "database": "shop", "client": "10.0.0.5", "is_runbook": False}
                       for i, (s, age, app) in enumerate(rows)]
                      + [{"pid": 900 + i, "state": "active", "seconds_in_state": 0.0, "application_name": "smartops",
                          "database": "shop", "client": "127.0.0.1", "is_runbook": True} for i in range(runbook)])
    return df


def login(ok: bool = True, slots: bool = False, error: str = "") -> LoginAttempt:
    return LoginAttempt(dsn="postgresql://smartops:******@db/shop", ok=ok, error=error, slots_exhausted=slots,
                        attempts=[{"error": error, "slots_exhausted": slots}] if error else [])


REFUSED = "FATAL: remaining connection slots are reserved for roles with the SUPERUSER attribute"


def findings(c: pd.DataFrame | None, attempt: LoginAttempt | None = None, pool_lines: list[str] | None = None,
             warn_pct: float = 90.0) -> list:
    attempt = attempt or login()
    out = [at(dp.Step.LOGIN, dp.check_login(attempt))]
    if c is None:   # logged out or refused: the later steps did not run
        return out + [failed(dp.Step.USAGE), failed(dp.Step.IDLE)]
    u = dp.usage(c, LIMITS)
    out += [at(dp.Step.USAGE, dp.check_usage(u, warn_pct)),
            at(dp.Step.IDLE, dp.check_idle(dp.idle_connections(c, "shop", PARAMS.idle_minutes), u,
                                           PARAMS.idle_minutes))]
    if pool_lines is not None:
        out.append(at(dp.Step.POOL_ERRORS, dp.check_pool_errors(pool_lines)))
    return out


NEAR, LEAK = "connections-near-limit", "idle-connection-leak"
POOL_LINE = "ERROR sqlalchemy: QueuePool limit reached: connection pool exhausted"

CASES = {
    # ---- each cause
    "pool full of long-idle connections": (findings(clients(idle_old=18)), [NEAR, LEAK], "a connection leak"),
    "over the threshold with busy connections": (findings(clients(active=18)), [NEAR], "No idle leak"),
    "every ordinary slot taken under the percentage": (
        findings(clients(active=17), warn_pct=99), [NEAR], "every ordinary slot taken"),
    "login refused for lack of slots": (
        findings(None, login(ok=False, slots=True, error=REFUSED)), [NEAR], "login was refused"),
    "in through the admin DSN, usage then seen": (
        findings(clients(idle_old=18), login(ok=True, slots=True, error=REFUSED)), [NEAR, LEAK], "held by leaky-app"),
    "leak on a busy server under the threshold": (findings(clients(idle_old=8, active=3)), [LEAK], "terminate-idle"),
    # ---- traps: a symptom without its cause
    "near the limit but nothing idle for long": (findings(clients(active=10, idle_new=8)), [NEAR], "No idle leak"),
    "approaching the threshold (warn) is not the limit": (findings(clients(active=15)), [], "approaching"),
    "many idle connections on a quiet server": (findings(clients(idle_old=3)), [], "an idle pool, not a leak"),
    "long-idle connections are a minority": (findings(clients(idle_old=3, active=9)), [], "not confirmed"),
    "pool-exhausted lines in the log, usage low": (
        findings(clients(active=2), pool_lines=[POOL_LINE] * 5), [], "not confirmed"),
    "login failed for another reason": (
        findings(None, login(ok=False, error="password authentication failed")), [], "nothing was measured"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_diagnose(case):
    assert_diagnosis(dp.diagnose, CASES[case][0], PARAMS, *CASES[case][1:])


def test_not_confirmed_with_failed_steps_is_inconclusive_not_healthy():
    d = dp.diagnose(findings(None, login(ok=False, error="timeout")), PARAMS)
    assert not d.confirmed and d.summary.endswith("nothing was measured.")


def test_idle_pool_is_named_as_such():
    f = findings(clients(idle_old=3))[2]
    assert f.status == "ok" and "an idle pool, not a leak" in f.summary and f.data["leak"] is False
