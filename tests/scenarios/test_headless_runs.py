"""Approvals: a widget only in a live JupyterLab session, never a wait under papermill."""
from __future__ import annotations

import pytest

from smartops_nb import catalog
from tests.conftest import run_runbook


@pytest.mark.timeout(600)
@pytest.mark.parametrize("runbook", sorted(catalog.RUNBOOKS), ids=str)
def test_every_runbook_runs_headless_without_waiting(runbook, healthy_sandbox, sandbox_params, archive, tmp_path):
    """mitigate mode, nothing approved: every action can only be recommended, and nothing may block."""
    params = {**sandbox_params, "mode": "mitigate", "docker_host": f"unix://{tmp_path}/no-engine.sock",
              "disk_paths": [str(tmp_path)], "log_dirs": [str(tmp_path)], "backup_dirs": [str(tmp_path)]}
    rec = run_runbook(runbook, archive, params, cell_timeout=60)
    assert rec.summary["status"] == "completed", rec.summary.get("error")
    assert all(a["mode"] == "recommended" for a in rec.actions())
    widgets = [o for c in rec.nb.cells for o in c.get("outputs", [])
               if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert not widgets

