"""The policy file: parsed and validated with the line named, roles resolved, approval rules matched."""
from __future__ import annotations

import pytest

from smartops_nb.contract import ParameterError
from smartops_nb.people import policy
from smartops_nb.people.identity import Forbidden, Identity, alertmanager, local

SAMPLE = """\
roles:
  admin: {users: [carol]}
  approver: {groups: [sre]}
  responder: {groups: [dev]}
approvals:
  - action: rollback
    environment: production
    groups: [sre]
  - action: [restart-database, flush-cache]
    two_person: true
"""


def person(name, *groups, how="oidc", role="viewer"):
    return Identity(subject=f"sub-{name}", issuer="https://idp.example", name=name, how=how, role=role,
                    groups=tuple(groups))


def test_roles_come_from_users_and_groups_the_highest_winning():
    p = policy.parse(SAMPLE, "policy.yaml")
    assert p.role_of(person("alice", "sre")) == "approver"
    assert p.role_of(person("bob", "dev")) == "responder"
    assert p.role_of(person("carol", "dev")) == "admin"
    assert p.role_of(person("eve")) == "viewer"
    assert p.role_of(alertmanager()) == "alertmanager"


def test_without_a_policy_file_everyone_but_alertmanager_is_admin():
    assert policy.NONE.role_of(person("eve")) == "admin" and policy.NONE.role_of(local("x")) == "admin"
    assert policy.NONE.role_of(alertmanager()) == "alertmanager"


@pytest.mark.parametrize("who, action, env, allowed", [
    (person("alice", "sre"), "rollback", "production", True),
    (person("bob", "dev"), "rollback", "production", False),        # responder: no approve at all
    (person("dave", "ops", how="token", role="approver"), "rollback", "production", False),  # not in group sre
    (person("dave", "ops", how="token", role="approver"), "rollback", "staging", True),
    (alertmanager(), "flush-cache", "staging", False),
])
def test_who_may_approve_which_action_where(who, action, env, allowed):
    p = policy.parse(SAMPLE, "policy.yaml")
    if allowed:
        p.may_approve(who, action, env, "P1")
    else:
        with pytest.raises(Forbidden, match="permission 'approve'"):
            p.may_approve(who, action, env, "P1")


def test_the_two_person_rule_is_per_action():
    p = policy.parse(SAMPLE, "policy.yaml")
    assert p.rule("flush-cache", "production", "P2").two_person and not p.rule("rollback", "x", "P2").two_person


@pytest.mark.parametrize("text, line, what", [
    ("roles:\n  admin: [carol\n", 3, "not YAML"),
    ("roles:\n  boss: {users: [carol]}\n", 2, "unknown role 'boss'"),
    ("approvals:\n  - action: rollback\n    two_person: maybe\n", 2, "two_person"),
    ("approvals:\n  - environment: production\n", 2, "needs 'action'"),
    ("roles: {}\nusers: []\n", 2, "unknown key 'users'"),
])
def test_a_bad_policy_is_one_line_naming_the_line(text, line, what):
    with pytest.raises(ParameterError, match=rf"policy.yaml, line {line}: .*{what}"):
        policy.parse(text, "policy.yaml")


def test_the_policy_in_force(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(policy.POLICY_ENV, raising=False)
    assert policy.load() is policy.NONE
    (tmp_path / "parameters").mkdir()
    (tmp_path / "parameters" / "policy.yaml").write_text(SAMPLE)
    assert policy.load().configured
    with pytest.raises(ParameterError, match="missing.yaml"):
        policy.load(tmp_path / "missing.yaml")


def test_serve_with_a_policy_that_does_not_parse_exits_2_naming_the_line(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    bad = tmp_path / "policy.yaml"
    bad.write_text("roles:\n  approver: {groups: [sre]}\n  boss: {users: [carol]}\n")
    out = subprocess.run([sys.executable, "-m", "smartops_nb.cli", "serve", "--policy", str(bad), "--port", "0",
                          "--archive", str(tmp_path / "incidents")], capture_output=True, text=True, cwd=REPO,
                         timeout=120)
    assert out.returncode == 2 and "line 3: unknown role 'boss'" in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
