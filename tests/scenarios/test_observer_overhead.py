"""What a runbook costs the system it inspects stays inside its bounds (counted, not timed).

Investigation never writes to what it reads: every runbook, run on a healthy sandbox, holds at most
one PostgreSQL connection at a time, runs at most 20 statements, writes no row, and sends Redis no
O(N) command — measured by ``bench/observer.py`` (the bench prints the same table with timings)."""
from __future__ import annotations

import importlib.util

import pytest
import yaml

from smartops_nb import catalog
from smartops_nb.execution.kernels import start_warm_kernel
from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("observer", REPO / "bench" / "observer.py")
observer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(observer)


@pytest.fixture(scope="module")
def params_file(sandbox, tmp_path_factory):
    folder = tmp_path_factory.mktemp("observer")
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump({**sandbox.params(), "api_log_path": str(sandbox.api_log),
                                    "sample_seconds": 2.0, "eviction_window_s": 1.0, "disk_paths": [str(folder)],
                                    "log_dirs": [str(folder)], "backup_dirs": [str(folder)]}))
    return path


@pytest.mark.parametrize("runbook", list(catalog.RUNBOOKS))
def test_a_runbook_stays_inside_its_observer_bounds(runbook, healthy_sandbox, params_file, tmp_path):
    base = observer.baseline(healthy_sandbox)
    kernel = start_warm_kernel()
    try:
        row = observer.less(observer.measure(kernel, runbook, params_file, tmp_path, healthy_sandbox), base)
    finally:
        kernel.close()
    assert row["status"] == "completed", row
    assert not observer.within_bounds(row), row
    assert row["pg_rows_written"] == 0 and not row["pg_writing_statements"], row


def test_the_benchs_warm_run_stores_a_record_as_serve_does(healthy_sandbox, params_file, tmp_path):
    """``bench/benchlib.warm_run`` (the storm and run benches' warm run) follows the product's API."""
    import benchlib  # on the path since bench/observer.py was loaded

    kernel = start_warm_kernel(start="fork")
    try:
        result = benchlib.warm_run(kernel, "db-pool-exhausted", params_file, tmp_path / "incidents")
    finally:
        kernel.close()
    assert result.summary["status"] == "completed", result.summary
    assert len(list((tmp_path / "incidents").glob("**/*.ipynb"))) == 1
