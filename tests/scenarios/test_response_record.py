"""Severity → response-time target and escalations, in the record and its summary cell."""
from __future__ import annotations

import datetime as dt

import pytest
import yaml

from smartops_nb.params import iso, utcnow
from tests.conftest import free_port, run_runbook


@pytest.mark.timeout(120)
def test_record_carries_response_with_contacts_from_the_parameters_file(sandbox_params, archive, tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text(yaml.safe_dump({"contacts": {"senior_engineer": {"name": "Ana", "contact": "+1 555 0100"}}}))
    detected = iso(utcnow() - dt.timedelta(minutes=20))
    rec = run_runbook("db-pool-exhausted", archive, {
        **sandbox_params, "postgres_dsn": f"postgresql://smartops@127.0.0.1:{free_port()}/smartamazon",
        "postgres_admin_dsn": "", "detected_at": detected}, files=(str(f),))
    r = rec.summary["response"]
    assert r["severity"] == "P1" and r["target_minutes"] == 15 and r["detected_at"] == detected
    assert r["met"] is False  # finished 20 min after detection, nothing executed
    senior = r["escalations"][0]
    assert senior == {**senior, "role": "Senior Engineer", "name": "Ana", "contact": "+1 555 0100"}
    summary_cell = rec.nb.cells[-1].outputs[-1]["data"]["text/html"]
    assert "Response" in summary_cell and "MISSED" in summary_cell

