"""`smartops` as automation sees it: exit codes, one-line errors, the record path last on stdout."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tests.conftest import REPO


def smartops(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smartops_nb.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, cwd=REPO)


def _notebooks_with(tmp_path: Path, runbook_file: str, extra_cell: str, after_index: int) -> Path:
    """A copy of notebooks/ where one runbook has an extra code cell (a fault in the notebook itself)."""
    folder = tmp_path / "notebooks"
    shutil.copytree(REPO / "notebooks", folder)
    nb = nbformat.read(folder / runbook_file, as_version=4)
    nb.cells.insert(after_index, nbformat.v4.new_code_cell(extra_cell))
    nbformat.write(nb, folder / runbook_file)
    return folder


def _begin_index(nb_path: Path) -> int:
    nb = nbformat.read(nb_path, as_version=4)
    return next(i for i, c in enumerate(nb.cells) if "so.begin(" in c.source) + 1


@pytest.mark.timeout(120)
def test_kernel_death_mid_run_exits_1_and_keeps_the_partial_record(tmp_path, sandbox_params):
    nb = REPO / "notebooks" / "db_pool_exhausted.ipynb"
    # one investigation step runs, then the kernel process kills itself
    folder = _notebooks_with(tmp_path, nb.name, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
                             _begin_index(nb) + 2)
    archive = tmp_path / "incidents"
    out = smartops("run", "db-pool-exhausted", "--no-progress", "--archive", str(archive),
                   "-p", "postgres_dsn", sandbox_params["postgres_dsn"], env={"SMARTOPS_NOTEBOOKS": str(folder)})
    assert out.returncode == 1, out.stderr
    record = Path(out.stdout.strip().splitlines()[-1])
    assert record.parent == archive and record.exists()
    summary = nbformat.read(record, as_version=4).metadata["smartops"]
    assert summary["status"] == "failed" and "DeadKernelError" in summary["error"]
    assert [f["check"] for f in summary["findings"]] == ["login"]  # the step before the death is kept
    # the notebook so far, as papermill held it in memory (it writes nothing during a run)
    cells = nbformat.read(record, as_version=4).cells
    login = next(c for c in cells if "db_pool.Step.LOGIN" in c.source)
    assert login.execution_count and login.outputs, login
    assert summary["timeline"][-1]["event"].startswith("run failed")


def test_a_bug_in_the_notebook_is_status_failed_with_the_record_saved(tmp_path, sandbox_params):
    nb = REPO / "notebooks" / "db_pool_exhausted.ipynb"
    folder = _notebooks_with(tmp_path, nb.name, "undefined_name_in_the_runbook", _begin_index(nb))
    archive = tmp_path / "incidents"
    out = smartops("run", "db-pool-exhausted", "--no-progress", "--archive", str(archive),
                   "-p", "postgres_dsn", sandbox_params["postgres_dsn"], env={"SMARTOPS_NOTEBOOKS": str(folder)})
    assert out.returncode == 1
    record = Path(out.stdout.strip().splitlines()[-1])
    nb_out = nbformat.read(record, as_version=4)
    assert nb_out.metadata["smartops"]["status"] == "failed"
    assert "NameError" in nb_out.metadata["smartops"]["error"]
    assert "Incident record summary" in nb_out.cells[-1].source  # the runner added the summary cell


def test_run_prints_diagnosis_and_record_path_last(tmp_path, sandbox_params):
    archive = tmp_path / "incidents"
    env = {"SMARTOPS_ARCHIVE": str(archive)}
    out = smartops("run", "db-pool-exhausted", "--no-progress", "-f", str(REPO / "parameters" / "demo.yaml"),
                   "-p", "postgres_dsn", sandbox_params["postgres_dsn"],
                   "-p", "api_log_path", sandbox_params["api_log_path"], env=env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert any(line.startswith("diagnosis:") for line in lines)
    record = Path(lines[-1])
    assert record.parent == archive and record.name.endswith("_db-pool-exhausted_demo.ipynb")
    meta = nbformat.read(record, as_version=4).metadata["smartops"]
    assert meta["schema"] == 1 and meta["environment"] == "demo" and meta["status"] == "completed"
    for key in ("incident_id", "detected_at", "started_at", "finished_at", "diagnosis", "findings", "actions",
                "timeline", "severity", "runbook"):
        assert key in meta
    # the last cell shows the summary to a person as a table
    last = nbformat.read(record, as_version=4).cells[-1]
    assert any("<table>" in o.get("data", {}).get("text/html", "") for o in last.outputs)


def test_plain_papermill_runs_a_runbook(tmp_path, sandbox_params):
    params = tmp_path / "params.yaml"
    params.write_text(f"postgres_dsn: {sandbox_params['postgres_dsn']}\nenvironment: test\n")
    out_nb = tmp_path / "out.ipynb"
    done = subprocess.run([sys.executable, "-m", "papermill", str(REPO / "notebooks" / "db_pool_exhausted.ipynb"),
                           str(out_nb), "-f", str(params), "--no-progress-bar"], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    nb = nbformat.read(out_nb, as_version=4)
    summaries = [o["data"]["application/vnd.smartops.summary+json"] for c in nb.cells if c.cell_type == "code"
                 for o in c.get("outputs", []) if "application/vnd.smartops.summary+json" in o.get("data", {})]
    assert summaries and summaries[-1]["status"] == "completed" and summaries[-1]["environment"] == "test"

