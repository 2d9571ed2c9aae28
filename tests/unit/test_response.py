"""Severity → response-time target and escalations, in the record and its summary cell."""
from __future__ import annotations

import datetime as dt

import pytest
import yaml

from smartops_nb import response
from smartops_nb.execution.prepare import prepare
from smartops_nb.kernel import display
from smartops_nb.params import ParameterError, iso

T0 = "2026-01-18T10:00:00Z"


def _at(minutes: float) -> str:
    return iso(dt.datetime(2026, 1, 18, 10, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=minutes))


@pytest.mark.parametrize("sev,minutes", [("P1", 15), ("P2", 60), ("P3", 240), ("P4", 1440)])
def test_targets_from_the_seed(sev, minutes):
    r = response.assess(sev, T0, now=_at(minutes - 1), responded_at=_at(minutes - 1), resolved=False)
    assert r["target_minutes"] == minutes and r["met"] is True
    r = response.assess(sev, T0, now=_at(minutes + 1), responded_at=_at(minutes + 1), resolved=False)
    assert r["met"] is False


def test_p1_escalation_ladder_and_statuses():
    r = response.assess("P1", T0, now=_at(20), responded_at=None, resolved=False)
    assert [(e["role"], e["after_minutes"], e["status"]) for e in r["escalations"]] == [
        ("Senior Engineer", 15, "overdue"), ("DevOps Lead", 30, "due"), ("CTO", 30, "due")]
    assert r["met"] is False  # 20 min and nothing done
    fixed = response.assess("P1", T0, now=_at(20), responded_at=_at(10), resolved=True)
    assert fixed["met"] is True and {e["status"] for e in fixed["escalations"]} == {"not needed"}


def test_contacts_section_overrides_the_seed_roles():
    c = response.contacts({"Senior Engineer": {"name": "Ana", "contact": "+1 555 0100"}, "cto": "cto@example.com"})
    assert c["senior_engineer"] == {"role": "Senior Engineer", "name": "Ana", "contact": "+1 555 0100"}
    assert c["cto"]["contact"] == "cto@example.com" and c["cto"]["name"] == "TBD"
    assert c["on_call_engineer"]["contact"] == "PagerDuty"  # default kept
    rows = response.contacts([{"role": "DevOps Lead", "name": "Bo", "contact": "@bo"}])
    assert rows["devops_lead"]["name"] == "Bo"


def test_bad_contacts_section_is_bad_input(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump({"contacts": [{"name": "no role"}]}))
    with pytest.raises(ParameterError, match="contacts"):
        prepare("db-pool-exhausted", [str(f)])


def test_summary_cell_shows_response_and_escalations():
    s = {"diagnosis": {}, "findings": [], "timeline": [],
         "response": response.assess("P1", T0, now=_at(20), responded_at=None, resolved=False)}
    html = display.summary_html(s)
    assert "MISSED" in html and "Escalation (overdue)" in html and "Senior Engineer" in html
    assert "Escalation (due)" in html and "CTO" in html

