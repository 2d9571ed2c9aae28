"""Approvals: a widget only in a live JupyterLab session, never a wait under papermill."""
from __future__ import annotations

import json
import types

from smartops_nb.actions import Action
from smartops_nb.contract import APPROVALS_ENV, HEADLESS_ENV, SESSION_ENV, STATE_ENV
from smartops_nb.findings import Diagnosis
from smartops_nb.kernel import approvals
from smartops_nb.kernel.run import Run


class _Shell:
    """Stands in for ipykernel's shell in the detection tests (only its class name and In matter)."""

    def __init__(self, history):
        self.user_ns = {"In": history}


ZMQShell = type("ZMQInteractiveShell", (_Shell,), {})


def test_detection_defaults_to_headless(monkeypatch):
    for var in (HEADLESS_ENV, STATE_ENV, APPROVALS_ENV, SESSION_ENV):
        monkeypatch.delenv(var, raising=False)
    assert not approvals.interactive(_Shell([]))  # not a kernel with a front end
    assert not approvals.interactive(ZMQShell(["import x"]))  # a kernel, but no Jupyter server session
    monkeypatch.setenv(SESSION_ENV, "incident.ipynb")
    assert approvals.interactive(ZMQShell(["", "import smartops_nb as so"]))  # JupyterLab
    assert not approvals.interactive(ZMQShell(["", "# Parameters\nmode = 'mitigate'\n"]))  # papermill's cell
    monkeypatch.setenv(HEADLESS_ENV, "1")
    assert not approvals.interactive(ZMQShell([""]))  # started by the runner
    monkeypatch.delenv(HEADLESS_ENV)
    monkeypatch.setenv(APPROVALS_ENV, "off")
    assert not approvals.interactive(ZMQShell([""]))


def test_widget_runs_the_action_only_after_the_right_confirmation(tmp_path, monkeypatch):
    state = tmp_path / "state.json"
    monkeypatch.setenv(STATE_ENV, str(state))
    run = Run("db-pool-exhausted", {"operator": "alice", "environment": "test"})
    run.diagnosis = Diagnosis(["idle-connection-leak"], "60 idle connections hold the pool")
    calls = []
    action = Action("terminate-idle-connections", "smartamazon", "terminate idle client connections",
                    execute=lambda: calls.append(1) or {"terminated_pids": [41, 42]},
                    preview=lambda: {"would_terminate": [41, 42]})
    recommended = run.act(action, when="idle-connection-leak")  # not mitigate mode: recommended only
    assert recommended["mode"] == "recommended" and not calls

    approval = approvals.Approval(run, action, recommended)
    assert "would_terminate" in approval.header.value and "smartamazon" in approval.header.value
    approval.text.value = "yes"
    assert approval.confirm(approval.button) is None
    assert not calls and len(run.actions) == 1 and "Not run" in approval.status.value

    approval.text.value = " smartamazon "
    approval.button.click()  # the real ipywidgets click path calls confirm()
    assert calls == [1]
    entry = run.actions[-1]
    assert entry == {**entry, "action": "terminate-idle-connections", "mode": "executed", "operator": "alice",
                     "approved_by": "interactive", "result": {"terminated_pids": [41, 42]}}
    assert entry["at"]
    assert approval.button.disabled
    approval.button.click()  # a second click runs nothing
    assert calls == [1]
    saved = json.loads(state.read_text())  # the run state (what the record is made of) holds the click
    assert [a["mode"] for a in saved["actions"]] == ["recommended", "executed"]
    assert saved["actions"][-1]["approved_by"] == "interactive"


def test_act_offers_a_widget_only_when_interactive(monkeypatch):
    run = Run("db-pool-exhausted", {"operator": "bob"})
    run.diagnosis = Diagnosis(["idle-connection-leak"], "leak")
    offered = []
    monkeypatch.setattr(approvals, "offer", lambda r, a, e: offered.append(a.name))
    action = Action("terminate-idle-connections", "db", "d", execute=lambda: {})
    monkeypatch.setattr(approvals, "interactive", lambda: False)
    run.act(action, when="idle-connection-leak")
    assert offered == []
    monkeypatch.setattr(approvals, "interactive", lambda: True)
    run.act(action, when="idle-connection-leak")
    run.act(types.SimpleNamespace(**{**vars(action), "manual": "needs a restart"}), when="idle-connection-leak")
    assert offered == ["terminate-idle-connections"]  # a manual action is never offered



def test_a_plan_s_control_approves_through_the_command_s_code_in_this_process(tmp_path, monkeypatch):
    """The plans notebook's button: `smartops approve`'s own code (no subprocess), its exit code and its
    one line shown; a plan this archive does not know is bad input (exit 2), nothing else said."""
    from smartops_nb.cli.approve import approve_here
    from smartops_nb.contract import QUEUE_ENV

    for var in (QUEUE_ENV, "SMARTOPS_TOKEN", "SMARTOPS_POLICY", "SMARTOPS_INDEX"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)  # no parameters/policy.yaml here
    plan = {"id": "pl-unknown1", "action": "terminate-idle-connections", "target": "<smartamazon>",
            "incident_id": "INC-1", "severity": "P1", "expires_at": "2099-01-01T00:00:00Z", "record": "r.ipynb"}
    (tmp_path / "incidents").mkdir()
    control = approvals.PlanApproval(plan, tmp_path / "incidents", "alice", approve=approve_here)
    assert "&lt;smartamazon&gt;" in control.header.value
    control.text.value = "pl-unknown1"
    assert control.confirm() == 2
    assert control.button.disabled
    said = control.status.value
    assert said.startswith("<pre>smartops approve: ") and "pl-unknown1" in said and said.count("\n") == 0, said
