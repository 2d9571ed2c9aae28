"""Who approved it (issue 24): personal tokens through the command itself, and the two-person rule,
on a real PostgreSQL leak with real runbook runs (the fixtures of tests/scenarios/test_approve.py)."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

from smartops_nb.execution import approve
from smartops_nb.people import policy
from smartops_nb.people.identity import Identity
from smartops_nb.records.archive import open_archive
from smartops_nb.records.plans import PlanRefused
from tests.conftest import REPO
from tests.scenarios.test_approve import _investigate, _the_plan

import pytest


def smartops(*args, token=None, timeout=300):
    env = {k: v for k, v in os.environ.items() if k not in ("SMARTOPS_TOKEN", "SMARTOPS_POLICY")}
    env.update({"SMARTOPS_TOKEN": token} if token else {})
    return subprocess.run([sys.executable, "-m", "smartops_nb.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout, env=env)


def test_token_create_approve_from_the_cli_revoke_then_401(leak, healthy_sandbox, sandbox_params, archive):
    made = smartops("token", "create", "--user", "alice", "--role", "approver", "--expires", "1d",
                    "--archive", str(archive))
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("smo_") and token not in made.stderr
    plan = _the_plan(_investigate(archive, sandbox_params, incident_id="INC-token"))

    done = smartops("approve", plan["id"], "--operator", "mallory", "--archive", str(archive), token=token)
    assert done.returncode == 0, done.stderr
    stored = open_archive(archive).plan_store().get(plan["id"])
    assert stored.state == "executed" and stored.decided_by == "alice"
    assert [(d["verb"], d["name"], d["subject"], d["issuer"], d["how"]) for d in stored.decisions] == [
        ("approve", "alice", "alice", "smartops-token", "token")]
    record = (archive / stored.outcome_record).read_text()
    assert "alice (subject alice, issuer smartops-token, via token)" in record and "mallory" not in record
    shown = smartops("incident", "show", "INC-token", "--archive", str(archive))
    assert f"plan {plan['id']} approved by alice (subject alice, issuer smartops-token, via token)" in shown.stdout

    listed = smartops("token", "list", "--json", "--archive", str(archive))
    assert listed.returncode == 0 and token not in listed.stdout, listed.stderr
    (row,) = json.loads(listed.stdout)
    token_id = row["id"]
    assert smartops("token", "revoke", token_id, "--archive", str(archive)).returncode == 0
    # (the leak is gone, so no second plan: a revoked token is refused before any plan is looked at)
    refused = smartops("deny", plan["id"], "--reason", "x", "--archive", str(archive), token=token)
    assert refused.returncode == 2 and "unauthorized: token" in refused.stderr and "revoked" in refused.stderr
    assert open_archive(archive).plan_store().get(plan["id"]).decisions == stored.decisions

    # no token, and no hash of it, in any record or output
    seen = "".join(p.read_text() for p in archive.glob("*.ipynb")) + done.stdout + done.stderr + refused.stderr
    assert token not in seen and hashlib.sha256(token.encode()).hexdigest() not in seen


def test_two_person_rule_first_pending_same_refused_second_executes_once(leak, healthy_sandbox, sandbox_params,
                                                                         archive):
    rules = policy.parse("roles:\n  approver: {groups: [sre]}\napprovals:\n"
                         "  - action: terminate-idle-connections\n    two_person: true\n", "policy.yaml")
    alice, bob = (Identity(subject=f"sub-{n}", issuer="https://idp.example", name=n, how="oidc", groups=("sre",))
                  for n in ("alice", "bob"))
    plan = _the_plan(_investigate(archive, sandbox_params, incident_id="INC-two"))
    first = approve.carry_out(plan["id"], alice, open_archive(archive), policy=rules)
    assert first.status == "pending" and "1 of 2" in first.reason and first.exit_code == 3
    with pytest.raises(PlanRefused, match="alice already approved it"):
        approve.carry_out(plan["id"], alice, open_archive(archive), policy=rules)
    second = approve.carry_out(plan["id"], bob, open_archive(archive), policy=rules)
    assert second.status == "executed", second.reason
    with pytest.raises(PlanRefused, match="already carried out"):
        approve.carry_out(plan["id"], Identity("sub-c", "https://idp.example", "carol", "oidc", groups=("sre",)),
                          open_archive(archive), policy=rules)
    runs = [p for p in archive.glob("*.ipynb") if "INC-two" in p.read_text()]
    assert len(runs) == 2  # the investigation and one mitigation
    assert [d["name"] for d in open_archive(archive).plan_store().get(plan["id"]).approvals] == ["alice", "bob"]


def test_tokens_in_the_postgresql_index_work_from_another_machine_s_process(archive_dsn, tmp_path):
    from smartops_nb.people.identity import Unauthorized
    from smartops_nb.people.tokens import Tokens
    from smartops_nb.records.archive import open_archive

    here = Tokens(open_archive(tmp_path / "here", archive_dsn))
    token, row = here.create("alice", "approver", "1d")
    assert here.identity(token).name == "alice"
    there = ["--archive", str(tmp_path / "there"), "--index", archive_dsn]  # another folder, the same index
    listed = smartops("token", "list", "--json", *there)
    assert listed.returncode == 0 and [r["id"] for r in json.loads(listed.stdout)] == [row["id"]], listed.stderr
    assert smartops("token", "revoke", row["id"], *there).returncode == 0
    with pytest.raises(Unauthorized, match="revoked"):
        here.identity(token)
    assert token not in listed.stdout and hashlib.sha256(token.encode()).hexdigest() not in listed.stdout
