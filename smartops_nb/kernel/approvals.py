"""Approve a recommended mitigation by hand in a live JupyterLab session.

Under papermill (``smartops run``, CI, scheduled runs) nothing here ever shows or waits: the
parameters alone decide, as :func:`smartops_nb.actions.decide` says. In a notebook opened in
JupyterLab, :meth:`Run.act <smartops_nb.kernel.run.Run.act>` hands each action it could only recommend
to :func:`offer`, which shows what the action would do, to what, the evidence (its preview) and a
button that runs it only after the operator typed the target's (or the action's) name.
"""
from __future__ import annotations

import html
import json
import os
from typing import Any, Callable

from smartops_nb import redact
from smartops_nb.actions import EXECUTED, Action, carry_out
from smartops_nb.contract import APPROVALS_ENV, HEADLESS_ENV, SESSION_ENV, STATE_ENV
from smartops_nb.params import Param, iso, utcnow

# APPROVALS_ENV: ``off`` never offers a widget, ``on`` skips the front-end check (the papermill
# checks still hold). HEADLESS_ENV: set by the runner in every kernel it starts. SESSION_ENV:
# jupyter_server gives the kernels of its sessions (JupyterLab, Notebook 7) the notebook's path there.
# papermill injects a cell tagged injected-parameters whose source starts with this comment
_PAPERMILL_MARKER = "# Parameters"


def _shell():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def under_papermill(shell=None) -> bool:
    """True when the runner started this kernel or papermill injected parameters into it."""
    if os.environ.get(HEADLESS_ENV) or os.environ.get(STATE_ENV):
        return True
    shell = shell or _shell()
    history = (getattr(shell, "user_ns", None) or {}).get("In", []) if shell else []
    return any(isinstance(src, str) and src.lstrip().startswith(_PAPERMILL_MARKER) for src in history)


def interactive(shell=None) -> bool:
    """A kernel with a connected front end that renders widgets — when unsure, False (headless)."""
    setting = os.environ.get(APPROVALS_ENV, "").lower()
    if setting in ("off", "0", "false", "no"):
        return False
    shell = shell or _shell()
    if shell is None or type(shell).__name__ != "ZMQInteractiveShell" or under_papermill(shell):
        return False
    if setting not in ("on", "1", "true", "yes") and not os.environ.get(SESSION_ENV):
        return False  # a kernel started outside a Jupyter server session (nbclient, a console...)
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


class Approval:
    """The control for one action; :meth:`confirm` is the button's click handler."""

    def __init__(self, run, action: Action, recommended: dict[str, Any]):
        import ipywidgets as w

        self.run, self.action, self.recommended = run, action, recommended
        self.done: dict[str, Any] | None = None
        evidence = json.dumps(recommended.get("result", {}).get("preview", recommended.get("result")),
                              indent=2, default=str)[:4000]
        self.header = w.HTML(
            f"<h4>Approve <code>{html.escape(action.name)}</code>?</h4>"
            f"<p><b>What it does:</b> {html.escape(action.description)}<br>"
            f"<b>Target:</b> <code>{html.escape(recommended['target'])}</code><br>"
            f"<b>Why:</b> {html.escape(', '.join(run.diagnosis.causes) if run.diagnosis else '')} — "
            f"{html.escape(run.diagnosis.summary if run.diagnosis else '')}</p>"
            f"<details><summary>Evidence (preview)</summary><pre>{html.escape(redact.scrub(evidence))}</pre>"
            f"</details>")
        self.text = w.Text(placeholder=f"type {recommended['target']} or {action.name} to confirm",
                           description="Confirm:", layout=w.Layout(width="60%"))
        self.button = w.Button(description=f"Run {action.name}", button_style="danger", icon="play")
        self.status = w.HTML("")
        self.button.on_click(self.confirm)
        self.widget = w.VBox([self.header, w.HBox([self.text, self.button]), self.status])

    def _accepted(self, typed: str) -> bool:
        return typed.strip() in {self.action.target, self.recommended["target"], self.action.name}

    def confirm(self, _button=None) -> dict[str, Any] | None:
        """Run the action if the confirmation text names its target or itself; record the outcome."""
        if self.done is not None:
            self.status.value = "<p>Already run; see the record.</p>"
            return None
        if not self._accepted(self.text.value):
            self.status.value = (f"<p style='color:#cf222e'>Not run: type <code>{html.escape(self.recommended['target'])}"
                                 f"</code> or <code>{html.escape(self.action.name)}</code> to confirm.</p>")
            return None
        self.button.disabled = self.text.disabled = True
        mode, result = carry_out(self.action, EXECUTED)
        entry = {
            "action": self.action.name, "target": self.recommended["target"], "mode": mode, "at": iso(utcnow()),
            "operator": self.run.params.operator, "reason": "approved interactively in JupyterLab",
            "description": self.action.description, "approved_by": "interactive",
            "confirmation": redact.scrub(self.text.value.strip()),
            "result": redact.scrub_obj(json.loads(json.dumps(result, default=str))),
        }
        plan = next((p for p in self.run.plans if p["id"] == self.recommended.get("plan_id")), None)
        if plan is not None:  # approved here: the saved record must not offer it again
            entry["plan_id"] = plan["id"]
            plan.update(status="executed" if mode == EXECUTED else "failed", decided_by=self.run.params.operator,
                        decided_at=entry["at"])
        self.done = self.run.record_action(entry)  # persisted into the run state with the other actions
        self.status.value = f"<p><b>{html.escape(mode)}</b> at {entry['at']} by {html.escape(entry['operator'])}</p>"
        return self.done


def offer(run, action: Action, recommended: dict[str, Any]) -> Approval:
    """Show the approval control for a recommended action (never blocks: the click comes later)."""
    from IPython.display import display

    approval = Approval(run, action, recommended)
    display(approval.widget)
    return approval


# -- plans of archived records (headless runs), approved from JupyterLab -----------------------------
PLANS_NOTEBOOK = "plans.ipynb"
#: The plans notebook's parameters (its parameters cell is generated from these).
PLANS_PARAMETERS = (
    Param("archive", str, "incidents", "the archive (folder or s3://; $SMARTOPS_INDEX) whose pending plans are shown"),
    Param("record", str, "", "only the plans of this record (its file name), empty for all"),
    Param("operator", str, "", "who approves (asked in the control when empty)"),
)

def pending_plans(archive: str, record: str = "") -> list[dict[str, Any]]:
    """The plans awaiting approval in an archive (a folder or s3://, the notebook's parameter; of one
    record when ``record`` names it)."""
    from smartops_nb.records.archive import open_archive

    return [p.to_dict() for p in open_archive(archive).plan_store().pending() if not record or p.record == record]


#: What approves a plan from the plans notebook: ``(plan_id, operator, archive) -> (exit code, what it
#: said)``. The kernel side never imports host-side code, so the notebook hands it in:
#: :func:`smartops_nb.cli.approve.approve_here`, ``smartops approve``'s own code run in this process.
Approve = Callable[[str, str, Any], "tuple[int, str]"]


class PlanApproval:
    """The control for one pending plan: typed confirmation of its target (or id), then ``approve``
    (``smartops approve``'s code, in this kernel) — the code path of the command line and of
    ``serve``, not a copy of it."""

    def __init__(self, plan: dict[str, Any], archive, operator: str = "", *, approve: Approve):
        import ipywidgets as w

        self.plan, self.archive, self.approve = plan, archive, approve
        self.header = w.HTML(
            f"<h4>Plan <code>{html.escape(plan['id'])}</code>: <code>{html.escape(plan['action'])}</code></h4>"
            f"<p><b>Target:</b> <code>{html.escape(plan['target'])}</code><br><b>Incident:</b> "
            f"{html.escape(plan['incident_id'])} ({html.escape(plan['severity'])}) · <b>causes:</b> "
            f"{html.escape(', '.join(plan.get('causes', [])))}<br><b>Approvable until:</b> "
            f"{html.escape(plan['expires_at'])} · record <code>{html.escape(plan['record'])}</code></p>")
        self.operator = w.Text(value=operator, description="Operator:", placeholder="your name")
        self.text = w.Text(placeholder=f"type {plan['target']} or {plan['id']} to confirm", description="Confirm:",
                           layout=w.Layout(width="60%"))
        self.button = w.Button(description=f"Approve {plan['id']}", button_style="danger", icon="check")
        self.status = w.HTML("")
        self.button.on_click(self.confirm)
        self.widget = w.VBox([self.header, self.operator, w.HBox([self.text, self.button]), self.status])

    def confirm(self, _button=None) -> int | None:
        if self.text.value.strip() not in {self.plan["target"], self.plan["id"]}:
            self.status.value = (f"<p style='color:#cf222e'>Not approved: type <code>{html.escape(self.plan['target'])}"
                                 f"</code> or <code>{html.escape(self.plan['id'])}</code> to confirm.</p>")
            return None
        if not self.operator.value.strip():
            self.status.value = "<p style='color:#cf222e'>Not approved: say who approves (Operator).</p>"
            return None
        self.button.disabled = self.text.disabled = True
        self.status.value = "<p>Carrying out the plan (the runbook re-checks before acting)…</p>"
        code, said = self.approve(self.plan["id"], self.operator.value.strip(), str(self.archive))
        self.status.value = f"<pre>{html.escape(redact.scrub(said.strip()))}</pre>"
        return code


def offer_plans(archive, record: str = "", operator: str = "", *, approve: Approve) -> list[dict[str, Any]]:
    """Show each pending plan with its approval control (live JupyterLab; its button calls ``approve``),
    or the command that approves it (anywhere else); return the plans."""
    from smartops_nb.records.render import plan_command

    from . import display

    found = pending_plans(archive, record)
    if not found:
        display.show_message(f"No plan awaits approval in {archive}" + (f" for {record}" if record else ""), "ok")
        return found
    display.show_table([{k: p[k] for k in ("id", "action", "target", "incident_id", "severity", "expires_at",
                                           "record")} for p in found], "Plans awaiting approval")
    if not interactive():
        for p in found:
            display.show_message(f"{p['id']}: {plan_command(p)}", "warn")
        return found
    from IPython.display import display as ipy_display

    for p in found:
        ipy_display(PlanApproval(p, archive, operator, approve=approve).widget)
    return found
