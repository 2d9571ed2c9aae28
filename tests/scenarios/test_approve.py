"""Approving a mitigation from the alert: a headless run's plan, carried out once, bound to its evidence.

Real PostgreSQL leak (the sandbox API holding every ordinary slot), real runbook runs, the plan store
beside the archive. The approval is `smartops approve`'s own code (in-process for speed; one test
goes through the command itself).
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest
import yaml

from smartops_nb.execution import approve
from smartops_nb.params import parse_time
from smartops_nb.records.archive import open_archive
from smartops_nb.records.plans import PlanRefused
from tests.conftest import REPO, run_runbook
from tests.fixtures.leak import LEAK_IDLE_MINUTES, app_backends

ACTION = "terminate-idle-connections"


def _investigate(archive, sandbox_params, **extra):
    return run_runbook("db-pool-exhausted", archive, {**sandbox_params, "idle_minutes": LEAK_IDLE_MINUTES, **extra})


def _the_plan(rec) -> dict:
    (plan,) = rec.summary["plans"]
    assert plan["action"] == ACTION and plan["status"] == "pending"
    return plan


def test_a_headless_run_records_a_pending_plan_bound_to_its_target_and_evidence(leak, sandbox_params, archive):
    rec = _investigate(archive, sandbox_params, incident_id="INC-plan")
    plan = _the_plan(rec)
    (entry,) = rec.actions()
    assert entry["mode"] == "recommended" and entry["plan_id"] == plan["id"]
    assert plan["target"] == entry["target"] and plan["incident_id"] == "INC-plan"
    assert plan["evidence_digest"].startswith("sha256:") and plan["causes"] == ["idle-connection-leak"]
    # P1: approvable for the seed's 15 minutes
    made, until = parse_time(plan["created_at"]), parse_time(plan["expires_at"])
    assert (until - made).total_seconds() == 15 * 60
    assert "mode" not in plan["parameters"] and plan["parameters"]["idle_minutes"] == LEAK_IDLE_MINUTES
    # the record says how to approve it; the store knows it as pending
    assert f"smartops approve {plan['id']}" in json.dumps(rec.nb.cells[-1].outputs)
    assert open_archive(archive).plan_store().get(plan["id"]).state == "pending"


def test_approve_terminates_the_leak_once_and_writes_a_linked_record(leak, healthy_sandbox, sandbox_params,
                                                                      archive, tmp_path):
    plan = _the_plan(_investigate(archive, sandbox_params, incident_id="INC-approve"))
    out = approve.carry_out(plan["id"], "alice", open_archive(archive))
    assert out.status == "executed" and out.exit_code == 0, out.reason
    s = out.result.summary
    assert s["incident_id"] == "INC-approve" and s["parameters"]["plan_id"] == plan["id"]
    (done,) = [a for a in s["actions"] if a.get("plan_id") == plan["id"]]
    assert done["mode"] == "executed" and done["approved_by"] == "alice"
    terminated = set(done["result"]["terminated_pids"])
    assert terminated == leak and not (app_backends(healthy_sandbox) & leak)  # the leaked ones are gone
    assert done["result"]["client_connections_after"] < done["result"]["client_connections_before"]
    stored = open_archive(archive).plan_store().get(plan["id"])
    assert (stored.state, stored.decided_by, stored.outcome_record) == ("executed", "alice", out.result.record.name)

    # approving again does nothing more: exit 1 and one line, through the command itself
    again = subprocess.run([sys.executable, "-m", "smartops_nb.cli", "approve", plan["id"], "--operator", "bob",
                            "--archive", str(archive)], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert again.returncode == 1, again.stderr
    assert len(again.stderr.strip().splitlines()) == 1 and "already carried out" in again.stderr
    assert len(list(archive.glob("*.ipynb"))) == 2  # no third run

    # the incident as a whole, and its post-mortem, tell the approval and its outcome
    shown = subprocess.run([sys.executable, "-m", "smartops_nb.cli", "incident", "show", "INC-approve", "--json",
                            "--archive", str(archive)], capture_output=True, text=True, cwd=REPO, timeout=120)
    inc = json.loads(shown.stdout)
    assert [r["role"] for r in inc["records"]] == ["investigation", "mitigation (plan)"]
    assert inc["status"] == "mitigated" and inc["plans"][0]["state"] == "executed"
    assert inc["plans"][0]["decided_by"] == "alice"
    pm = tmp_path / "pm.md"
    done_pm = subprocess.run([sys.executable, "-m", "smartops_nb.cli", "postmortem", "--incident", "INC-approve",
                              "--archive", str(archive), "-o", str(pm)], capture_output=True, text=True, cwd=REPO,
                             timeout=120)
    assert done_pm.returncode == 0, done_pm.stderr
    text = pm.read_text()
    assert f"Plan {plan['id']} proposed" in text and f"Plan {plan['id']} approved by alice: executed" in text
    assert f"(plan {plan['id']} approved by alice)" in text


def test_an_expired_or_denied_plan_is_refused_and_nothing_is_done(leak, healthy_sandbox, sandbox_params, archive):
    expired = _the_plan(_investigate(archive, sandbox_params, incident_id="INC-exp", approval_expires_minutes=0.002))
    time.sleep(0.3)  # 0.002 min = 0.12 s: the plan's own expiry, not a synchronisation
    with pytest.raises(PlanRefused, match="expired"):
        approve.carry_out(expired["id"], "alice", open_archive(archive))
    denied = _the_plan(_investigate(archive, sandbox_params, incident_id="INC-deny"))
    approve.deny(denied["id"], "carol", "we restart the API instead", open_archive(archive))
    with pytest.raises(PlanRefused, match="denied by carol"):
        approve.carry_out(denied["id"], "alice", open_archive(archive))
    assert app_backends(healthy_sandbox) >= leak  # nothing terminated
    assert len(list(archive.glob("*.ipynb"))) == 2  # no mitigating run


def test_evidence_changed_before_approval_is_refused_with_the_reason(leak, healthy_sandbox, sandbox_params,
                                                                     archive):
    plan = _the_plan(_investigate(archive, sandbox_params, incident_id="INC-gone"))
    healthy_sandbox.heal()  # the leak is gone before anyone approves
    out = approve.carry_out(plan["id"], "alice", open_archive(archive))
    assert out.status == "refused" and out.exit_code == 1
    assert "no longer holds" in out.reason
    (entry,) = [a for a in out.result.summary["actions"] if a.get("plan_id") == plan["id"]]
    assert entry["mode"] == "refused" and entry["result"] == {}  # nothing terminated
    assert open_archive(archive).plan_store().get(plan["id"]).state == "refused"


def test_two_plans_on_one_target_run_one_after_the_other(leak, healthy_sandbox, sandbox_params, archive):
    first = _the_plan(_investigate(archive, sandbox_params, incident_id="INC-a"))
    second = _the_plan(_investigate(archive, sandbox_params, incident_id="INC-b"))
    assert first["target"] == second["target"]
    outcomes = {}

    def go(plan):
        outcomes[plan["id"]] = approve.carry_out(plan["id"], "alice", open_archive(archive))

    threads = [threading.Thread(target=go, args=(p,)) for p in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    # timestamps have whole seconds: two quick runs can share a started_at, so order by both ends
    runs = sorted((o.result.summary for o in outcomes.values()), key=lambda s: (s["started_at"], s["finished_at"]))
    assert parse_time(runs[0]["finished_at"]) <= parse_time(runs[1]["started_at"])  # never at once
    # the first terminated the leak; the second re-checked and found its cause gone
    assert sorted(o.status for o in outcomes.values()) == ["executed", "refused"]


def test_a_plan_whose_parameters_held_a_secret_needs_the_parameters_file(leak, healthy_sandbox, sandbox_params,
                                                                        archive, tmp_path, monkeypatch):
    # a DSN with a literal password: the record masks it, so the approval must be given the file again
    dsn = healthy_sandbox.postgres.dsn(user="smartops").replace("smartops@", "smartops:Secret-Pw-42@")
    plan = _the_plan(_investigate(archive, sandbox_params, incident_id="INC-secret", postgres_dsn=dsn))
    assert "Secret-Pw-42" not in json.dumps(plan) and "******" in plan["parameters"]["postgres_dsn"]
    with pytest.raises(Exception, match="postgres_dsn.*held a secret"):
        approve.carry_out(plan["id"], "alice", open_archive(archive))
    assert open_archive(archive).plan_store().get(plan["id"]).state == "pending"  # bad input claimed nothing
    files = tmp_path / "secrets.yaml"
    files.write_text(yaml.safe_dump({"postgres_dsn": dsn}))
    out = approve.carry_out(plan["id"], "alice", open_archive(archive), files=[str(files)])
    assert out.status == "executed", out.reason
    assert "Secret-Pw-42" not in out.result.record.read_text()


def test_the_plans_notebook_lists_pending_plans_with_the_command_headless(leak, sandbox_params, archive, tmp_path):
    import papermill

    plan = _the_plan(_investigate(archive, sandbox_params, incident_id="INC-nb"))
    out = tmp_path / "plans-run.ipynb"
    papermill.execute_notebook(str(REPO / "notebooks" / "plans.ipynb"), str(out), parameters={"archive": str(archive)},
                               progress_bar=False, cwd=str(REPO))
    shown = out.read_text()
    assert plan["id"] in shown and f"smartops approve {plan['id']}" in shown and plan["target"] in shown


def test_the_plans_notebook_s_button_approves_through_the_command_s_code_in_its_kernel(leak, healthy_sandbox,
                                                                                       sandbox_params, archive,
                                                                                       tmp_path):
    # the button's handler runs in a Jupyter kernel (an event loop running, as in JupyterLab): the
    # approval is `smartops approve`'s own code in that kernel, no subprocess of the command
    import nbformat
    import papermill

    plan = _the_plan(_investigate(archive, sandbox_params, incident_id="INC-lab"))
    click = nbformat.v4.new_code_cell(
        "import subprocess\n"
        "from smartops_nb.cli.approve import approve_here\n"
        "from smartops_nb.kernel.approvals import PlanApproval, pending_plans\n"
        "started = []\n"
        "class Recorded(subprocess.Popen):\n"
        "    def __init__(self, args, *a, **k):\n"
        "        started.append(str(args))\n"
        "        super().__init__(args, *a, **k)\n"
        "subprocess.Popen = Recorded\n"
        f"(p,) = pending_plans({str(archive)!r})\n"
        f"control = PlanApproval(p, {str(archive)!r}, 'alice', approve=approve_here)\n"
        "control.text.value = 'nothing'\n"
        "refused = control.confirm()\n"
        "control.text.value = p['target']\n"
        "print('EXIT', refused, control.confirm())\n"
        "print('CLI', [a for a in started if 'smartops_nb.cli' in a])\n"
        "print(control.status.value)")
    nb = tmp_path / "click.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[click]), nb)
    out = tmp_path / "click-run.ipynb"
    papermill.execute_notebook(str(nb), str(out), kernel_name="python3", progress_bar=False, cwd=str(REPO))
    said = "".join(o.get("text", "") for o in nbformat.read(out, 4).cells[0].outputs)
    assert "EXIT None 0" in said and "CLI []" in said, said
    assert f"plan {plan['id']}: executed" in said
    stored = open_archive(archive).plan_store().get(plan["id"])
    assert (stored.state, stored.decided_by) == ("executed", "alice")
    assert stored.outcome_record and stored.outcome_record in said  # the record the command printed
