"""What a check concludes (Finding) and what a runbook concludes from all of them (Diagnosis)."""
from __future__ import annotations

from dataclasses import dataclass, field, asdict
from typing import Any, Callable, TypeVar

STATUSES = ("ok", "warn", "critical", "error")


@dataclass
class Finding:
    """One investigation step's conclusion. ``data`` holds the evidence, JSON-serialisable."""

    status: str
    summary: str
    data: dict[str, Any] = field(default_factory=dict)
    check: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"finding status must be one of {STATUSES}, got {self.status!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {"check": d["check"], "status": d["status"], "summary": d["summary"], "data": d["data"]}


@dataclass
class Diagnosis:
    causes: list[str]
    summary: str
    #: steps that could not complete: with nothing confirmed, "not confirmed" is not "healthy"
    incomplete: list[str] = field(default_factory=list)

    @property
    def confirmed(self) -> bool:
        return bool(self.causes)

    @property
    def inconclusive(self) -> bool:
        """Nothing confirmed, but some evidence could not be gathered: never read this as resolved."""
        return not self.causes and bool(self.incomplete)

    def to_dict(self) -> dict[str, Any]:
        return {"confirmed": self.confirmed, "causes": list(self.causes), "summary": self.summary,
                "inconclusive": self.inconclusive, "incomplete_steps": list(self.incomplete)}


Rule = TypeVar("Rule", bound=Callable)


def reads(*steps: str) -> Callable[[Rule], Rule]:
    """Declare the steps a diagnosis rule reads (``@reads(Step.LOGIN, Step.USAGE)``).

    :meth:`smartops_nb.kernel.run.Run.diagnose` records a step that did not run as an ``error``
    finding, so the diagnosis says it is inconclusive instead of silently "not confirmed"."""
    def mark(rule: Rule) -> Rule:
        rule.reads = tuple(str(s) for s in steps)
        return rule
    return mark


def steps_read_by(rule: Callable) -> tuple[str, ...]:
    return getattr(rule, "reads", ())


def by_check(findings: list[Finding]) -> dict[str, Finding]:
    """Index findings by check name (the last one wins if a check ran twice)."""
    return {f.check: f for f in findings}
