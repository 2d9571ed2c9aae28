"""A post-mortem drafted from a real sandbox incident: investigate, mitigate (approved), confirm."""
from __future__ import annotations

import hashlib
import re

import pytest

from smartops_nb import catalog
from smartops_nb.cli import main as cli
from smartops_nb.params import iso, utcnow
from tests.conftest import run_runbook
from tests.fixtures.leak import LEAK_IDLE_MINUTES, inject_leak

SECTIONS = ["# Incident Post-Mortem", "**Date:**", "**Severity:**", "**Duration:**", "**Impact:**",
            "## Timeline", "## Root Cause", "## Resolution", "## Action Items", "## Lessons Learned",
            "## Post-Incident Checklist", "## Evidence"]


@pytest.fixture
def incident(healthy_sandbox, sandbox_params, archive):
    """Three runs of one incident against a really leaking PostgreSQL."""
    inject_leak(healthy_sandbox)
    base = {**sandbox_params, "idle_minutes": LEAK_IDLE_MINUTES, "incident_id": "INC-42", "environment": "sandbox",
            "detected_at": iso(utcnow())}
    investigate = run_runbook("db-pool-exhausted", archive, base)
    mitigate = run_runbook("db-pool-exhausted", archive, {**base, "mode": "mitigate",
                                                          "approved_actions": ["terminate-idle-connections"]})
    healthy_sandbox.heal()
    confirm = run_runbook("db-pool-exhausted", archive, base)
    assert investigate.summary["diagnosis"]["confirmed"] and not confirm.summary["diagnosis"]["confirmed"]
    return [investigate, mitigate, confirm]


def test_postmortem_from_a_sandbox_incident(incident, tmp_path, capsys):
    out = tmp_path / "pm" / "INC-42.md"
    # records given out of order: the timeline is still in time order
    code = cli.main(["postmortem", *(str(r.path) for r in reversed(incident)), "-o", str(out)])
    assert code == 0 and capsys.readouterr().out.strip() == str(out)
    md = out.read_text()
    for section in SECTIONS:
        assert section in md, section
    assert "**Severity:** P1" in md and "**Impact:** _to fill in_" in md
    lines = md[md.index("## Timeline"):md.index("## Root Cause")].splitlines()[1:]
    events = [l for l in lines if l.startswith("- ")]
    times = [l[2:21] for l in events]
    assert times == sorted(times)
    text = "\n".join(events)
    for milestone in ("Incident detected", "Investigation started", "Root cause identified",
                      "Mitigation applied: terminate-idle-connections", "Incident resolved"):
        assert milestone in text, milestone
    assert [e.split(" - ", 1)[1].split(":")[0].split(" (")[0] for e in events][-1] == "Incident resolved"
    root = md[md.index("## Root Cause"):md.index("## Resolution")]
    assert "idle-connection-leak" in root and "`connection-usage`" in root  # critical finding as evidence
    resolution = md[md.index("## Resolution"):md.index("## Action Items")]
    assert "`terminate-idle-connections`" in resolution
    for fix in catalog.get("db-pool-exhausted").permanent_fixes:
        assert f"[ ] {fix}" in md
    assert "- [x] Document timeline" in md and "- [x] Incident record archived" in md
    assert re.search(r"- \[ \] Schedule post-mortem meeting \(within 48 hours for P1/P2\) — due by", md)
    for r in incident:
        assert f"`{r.path.name}`" in md and hashlib.sha256(r.path.read_bytes()).hexdigest() in md
    charts = re.findall(r"!\[chart \d+\]\(([^)]+)\)", md)
    assert charts and all((out.parent / c).read_bytes().startswith(b"\x89PNG") for c in charts)


def test_records_of_different_incidents_are_refused(healthy_sandbox, sandbox_params, archive, tmp_path, capsys):
    a = run_runbook("db-pool-exhausted", archive, {**sandbox_params, "incident_id": "INC-1"})
    b = run_runbook("db-pool-exhausted", archive, {**sandbox_params, "incident_id": "INC-2"})
    assert cli.main(["postmortem", str(a.path), str(b.path), "-o", str(tmp_path / "x.md")]) == 2
    assert "different incidents" in capsys.readouterr().err and not (tmp_path / "x.md").exists()
    assert cli.main(["postmortem", str(tmp_path / "nope.ipynb")]) == 2

