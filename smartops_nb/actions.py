"""Mitigations: described as data, gated by mode and approval, every decision logged.

An :class:`Action` says what it would do to what; :func:`decide` says whether this run may do it.
Investigation never executes anything: in ``investigate`` mode, or when the action is not in
``approved_actions``, the action is only *recommended* (with a read-only preview of its effect).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from smartops_nb.support.reasons import one_line

RECOMMENDED, DRY_RUN, EXECUTED, FAILED = "recommended", "dry-run", "executed", "failed"
#: A run carrying out an approved plan found the plan's cause gone or its target changed: nothing done.
REFUSED = "refused"


@dataclass
class Action:
    name: str
    target: str
    description: str
    execute: Callable[[], dict[str, Any]]
    preview: Callable[[], dict[str, Any]] | None = None
    manual: str = ""  # when set, the action cannot be run from here (why, and what to do instead)


def decide(action: Action, *, mode: str, approved: list[str], dry_run: bool = False) -> tuple[str, str]:
    """Return (mode the action gets, one-line reason)."""
    if action.manual:
        return RECOMMENDED, f"recommended only: {action.manual}"
    if mode != "mitigate":
        return RECOMMENDED, "investigate mode: recommended only (re-run with mode=mitigate and approve it to run)"
    if action.name not in approved:
        return RECOMMENDED, f"mitigate mode, but {action.name!r} is not in approved_actions"
    if dry_run:
        return DRY_RUN, "approved, dry run: nothing changed"
    return EXECUTED, "approved in mitigate mode"


def carry_out(action: Action, decision: str) -> tuple[str, dict[str, Any]]:
    """Run (or preview) the action; a failure becomes mode ``failed`` with its reason, never a crash."""
    try:
        if decision == EXECUTED:
            return EXECUTED, action.execute()
        result = action.preview() if action.preview else {}
        return decision, {"preview": result}
    except Exception as e:  # the record must say what went wrong, the run goes on
        reason = one_line(e)
        if decision == EXECUTED:
            return FAILED, {"error": reason}
        return decision, {"preview_error": reason}
