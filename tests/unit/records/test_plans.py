"""Plans and their store: made with an expiry from the seed's targets, approved at most once."""
from __future__ import annotations

import threading
import time

import pytest

from smartops_nb.contract import ParameterError
from smartops_nb.execution.approve import outcome_of, plan_parameters
from smartops_nb.params import parse_time
from smartops_nb.records import plans
from smartops_nb.records.plans import PlanRefused, SqlitePlanStore


def _plan(severity="P1", minutes=0.0, **params):
    return plans.make(runbook="db-pool-exhausted", incident_id="INC-1", severity=severity,
                      action="terminate-idle-connections", target="database smartamazon", causes=["idle-connection-leak"],
                      parameters={"postgres_dsn": "postgresql://u:hunter2@db/x", "mode": "investigate",
                                  "idle_minutes": 5.0, **params},
                      evidence={"pids": [1, 2]}, expires_minutes=minutes)


@pytest.mark.parametrize("severity, minutes", [("P1", 15), ("P2", 60), ("P3", 240), ("P4", 1440)])
def test_a_plan_expires_after_its_severity_target(severity, minutes):
    p = _plan(severity)
    assert (parse_time(p["expires_at"]) - parse_time(p["created_at"])).total_seconds() == minutes * 60
    assert (parse_time(_plan(severity, 2)["expires_at"]) - parse_time(p["created_at"])).total_seconds() <= 121


def test_a_plan_keeps_no_secret_and_not_the_run_s_own_mode():
    p = _plan()
    assert "hunter2" not in str(p) and p["parameters"]["postgres_dsn"] == "postgresql://u:******@db/x"
    assert "mode" not in p["parameters"] and p["id"].startswith("pl-") and len(p["id"]) == 11
    assert p["evidence_digest"] == plans.digest({"pids": [1, 2]})


@pytest.fixture
def store(tmp_path):
    """A folder archive's store; tests/scenarios/test_plan_store_postgres.py runs the same tests on the
    PostgreSQL one."""
    return SqlitePlanStore(tmp_path)


def test_only_one_of_many_concurrent_approvals_wins(store):
    p = _plan()
    store.register({"plans": [p]}, "r.ipynb")
    wins, refusals = [], []

    def approve(who):
        try:
            wins.append(store.claim(p["id"], who).decided_by)
        except PlanRefused as e:
            refusals.append(str(e))

    threads = [threading.Thread(target=approve, args=(f"op{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and len(refusals) == 7
    assert all("already approved" in r for r in refusals)


def test_denied_expired_unknown_and_finished_plans_are_refused(store):
    denied, expired, done = _plan(), _plan(minutes=0.0001), _plan()
    store.register({"plans": [denied, expired, done]}, "r.ipynb")
    store.deny(denied["id"], "carol", "not now")
    with pytest.raises(PlanRefused, match="denied by carol at .*: not now"):
        store.claim(denied["id"], "alice")
    time.sleep(0.05)  # past its 6 ms
    with pytest.raises(PlanRefused, match="expired"):
        store.claim(expired["id"], "alice")
    store.claim(done["id"], "alice")
    store.finish(done["id"], plans.EXECUTED, "ok", "r2.ipynb")
    with pytest.raises(PlanRefused, match="already carried out"):
        store.claim(done["id"], "bob")
    with pytest.raises(PlanRefused, match="already carried out"):
        store.deny(done["id"], "bob", "too late")
    with pytest.raises(PlanRefused, match="no plan 'pl-nope'"):
        store.get("pl-nope")
    with pytest.raises(PlanRefused, match="was resolved since"):
        store.claim(_register(store, _plan())["id"], "alice", resolved_by="r9.ipynb")


def _register(store, p):
    store.register({"plans": [p]}, "r.ipynb")
    return p


def test_a_masked_parameter_must_come_from_the_approval_s_files():
    stored = plans.Plan(**{**{k: None for k in plans.Plan.__dataclass_fields__}, "id": "pl-x",
                           "action": "terminate-idle-connections", "target": "t", "plan": _plan()})
    with pytest.raises(ParameterError, match="postgres_dsn"):
        plan_parameters(stored, "alice", {})
    out = plan_parameters(stored, "alice", {"postgres_dsn": "postgresql://u:hunter2@db/x"})
    assert "postgres_dsn" not in out  # taken from the files, never from the record
    assert out["mode"] == "mitigate" and out["approved_actions"] == ["terminate-idle-connections"]
    assert (out["plan_id"], out["plan_target"], out["operator"]) == ("pl-x", "t", "alice")


def test_the_outcome_is_read_from_the_action_entry_carrying_the_plan():
    p = plans.Plan(**{**{k: None for k in plans.Plan.__dataclass_fields__}, "id": "pl-x", "action": "a", "plan": {}})
    assert outcome_of({"actions": [{"plan_id": "pl-x", "mode": "executed", "target": "t"}]}, p)[0] == "executed"
    assert outcome_of({"actions": [{"plan_id": "pl-x", "mode": "refused", "target": "t", "reason": "gone"}]},
                      p) == ("refused", "gone")
    assert outcome_of({"actions": [], "status": "failed", "error": "kernel died"}, p)[0] == "failed"


def test_plans_on_one_target_run_one_after_the_other_and_a_long_wait_is_refused(store):
    a, b = _plan(), _plan()
    store.register({"plans": [a, b]}, "r.ipynb")
    first, second = store.get(a["id"]), store.get(b["id"])
    assert first.lock_key == second.lock_key  # same runbook, same target
    order = []

    def hold(plan, seconds):
        with store.target_lock(plan):
            order.append(("in", plan.id))
            time.sleep(seconds)
            order.append(("out", plan.id))

    t = threading.Thread(target=hold, args=(first, 0.5))
    t.start()
    time.sleep(0.1)
    with pytest.raises(PlanRefused, match="held its lock for 0 s"):
        with store.target_lock(second, wait=0.2):
            pass
    hold(second, 0)  # waits for the first, then runs
    t.join()
    assert order == [("in", a["id"]), ("out", a["id"]), ("in", b["id"]), ("out", b["id"])]


def test_a_released_plan_is_pending_again_and_approvable(store):
    p = _plan()
    store.register({"plans": [p]}, "r.ipynb")
    store.claim(p["id"], "alice")
    back = store.release(p["id"], "not queued: connection refused")
    assert back.state == "pending" and back.decided_by is None and "not queued" in back.reason
    assert store.claim(p["id"], "bob").decided_by == "bob"


def test_rows_copy_into_another_store_as_they_are(tmp_path):
    src, dst = SqlitePlanStore(tmp_path / "a"), SqlitePlanStore(tmp_path / "b")
    p = _plan()
    src.register({"plans": [p]}, "r.ipynb")
    src.deny(p["id"], "carol", "no")
    dst.insert(src.rows())
    dst.insert(src.rows())  # twice: kept once
    assert [r["id"] for r in dst.rows()] == [p["id"]] and dst.get(p["id"]).state == "denied"


def test_a_plan_whose_target_stays_locked_fails_with_the_reason_and_does_not_stay_approved(store):
    from types import SimpleNamespace

    from smartops_nb.execution.approve import run_claimed

    a, b = _plan(), _plan()
    store.register({"plans": [a, b]}, "r.ipynb")
    held, waiting = store.claim(a["id"], "alice"), store.claim(b["id"], "bob")
    where = SimpleNamespace(plan_store=lambda: store)
    ran = []
    original = store.target_lock
    store.target_lock = lambda plan, wait=0.2: original(plan, wait)  # a short wait for the test
    with original(held):
        with pytest.raises(PlanRefused, match="held its lock"):
            run_claimed(waiting, None, where, lambda prep: ran.append(prep))
    assert not ran and store.get(b["id"]).state == "failed" and "not carried out" in store.get(b["id"]).reason


def _who(name):
    return {"subject": f"sub-{name}", "issuer": "https://idp.example", "name": name, "how": "oidc"}


def test_two_person_rule_first_approval_leaves_it_pending_same_person_refused_second_claims(store):
    p = _plan()
    store.register({"plans": [p]}, "r.ipynb")
    first = store.claim(p["id"], "alice", who=_who("alice"), needed=2)
    assert first.status == plans.PENDING and [d["name"] for d in first.approvals] == ["alice"]
    with pytest.raises(PlanRefused, match="alice already approved it"):
        store.claim(p["id"], "alice", who=_who("alice"), needed=2)
    second = store.claim(p["id"], "bob", who=_who("bob"), needed=2)
    assert second.status == plans.APPROVED and second.decided_by == "bob"
    assert [(d["name"], d["subject"], d["issuer"]) for d in second.to_dict()["decisions"]] == [
        ("alice", "sub-alice", "https://idp.example"), ("bob", "sub-bob", "https://idp.example")]
    with pytest.raises(PlanRefused, match="already approved"):
        store.claim(p["id"], "carol", who=_who("carol"), needed=2)


def test_a_second_approval_after_the_plan_expired_is_refused(store):
    p = _plan(minutes=0.0001)
    store.register({"plans": [p]}, "r.ipynb")
    time.sleep(0.05)  # past its 6 ms
    with pytest.raises(PlanRefused, match="expired"):
        store.claim(p["id"], "alice", who=_who("alice"), needed=2)


def test_a_denial_keeps_who_denied(store):
    p = _plan()
    store.register({"plans": [p]}, "r.ipynb")
    out = store.deny(p["id"], "bob", "not now", who=_who("bob"))
    assert out.decisions[0]["verb"] == "deny" and out.decisions[0]["subject"] == "sub-bob"
