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
from typing import Any

from smartops_nb import redact
from smartops_nb.actions import EXECUTED, Action, carry_out
from smartops_nb.contract import APPROVALS_ENV, HEADLESS_ENV, SESSION_ENV, STATE_ENV
from smartops_nb.params import iso, utcnow

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
        self.done = self.run.record_action(entry)  # persisted into the run state with the other actions
        self.status.value = f"<p><b>{html.escape(mode)}</b> at {entry['at']} by {html.escape(entry['operator'])}</p>"
        return self.done


def offer(run, action: Action, recommended: dict[str, Any]) -> Approval:
    """Show the approval control for a recommended action (never blocks: the click comes later)."""
    from IPython.display import display

    approval = Approval(run, action, recommended)
    display(approval.widget)
    return approval
