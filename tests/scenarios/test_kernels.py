"""Warm kernels: a pooled run's record has the form of a cold run's, and no state survives a run."""
from __future__ import annotations

import nbformat
import pytest

from smartops_nb.execution import kernels
from smartops_nb.execution.flow import investigate
from smartops_nb.execution.prepare import prepare
from tests.conftest import Record
from tests.fixtures.leak import LEAK_IDLE_MINUTES, inject_leak


def _form(rec: Record) -> tuple:
    nb = rec.nb
    return (sorted(nb.metadata), sorted(nb.metadata["smartops"]), len(nb.cells),
            [c.cell_type for c in nb.cells], [c.get("execution_count") for c in nb.cells if c.cell_type == "code"])


@pytest.mark.timeout(240)
def test_warm_and_cold_runs_give_records_of_the_same_form(healthy_sandbox, sandbox_params, archive):
    inject_leak(healthy_sandbox)
    prep = prepare("db-pool-exhausted", (), {**sandbox_params, "idle_minutes": LEAK_IDLE_MINUTES})
    with kernels.KernelPool(1) as pool, pool.lease(timeout=60) as kernel:
        assert kernel is not None
        warm = Record(investigate(prep, archive, progress=False, cell_timeout=120, kernel=kernel))
    cold = Record(investigate(prep, archive, progress=False, cell_timeout=120))
    assert warm.summary["status"] == cold.summary["status"] == "completed"
    assert warm.summary["diagnosis"]["causes"] == cold.summary["diagnosis"]["causes"] == [
        "connections-near-limit", "idle-connection-leak"]
    assert warm.summary["diagnosis"]["confirmed"] and cold.summary["diagnosis"]["confirmed"]
    assert _form(warm) == _form(cold)  # same metadata keys, cells, execution counts (warm-up left no trace)
    assert "__smartops_warmup" not in nbformat.writes(warm.nb)
    assert not kernel.folder.exists()  # the lease's end shut the kernel down and removed its folder


@pytest.mark.timeout(120)
def test_a_leased_kernel_that_died_in_the_pool_is_restarted_and_the_run_completes(healthy_sandbox, sandbox_params,
                                                                                   archive):
    import os
    import signal

    kernel = kernels.start_warm_kernel()
    try:
        kernel.set_env({"SMARTOPS_TEST_ENV": "set"})  # over the shell channel alone: a warm kernel answers
        os.kill(kernel.km.provisioner.pid, signal.SIGKILL)  # dies while it waits in the pool
        with pytest.raises(RuntimeError, match="died"):   # noticed by its process, not after set_env's 30 s
            kernel.set_env({"SMARTOPS_TEST_ENV": "again"}, timeout=30)
        prep = prepare("db-pool-exhausted", (), sandbox_params)
        rec = Record(investigate(prep, archive, progress=False, cell_timeout=120, kernel=kernel))
    finally:
        kernel.close()
    assert rec.summary["status"] == "completed", rec.summary.get("error")
    assert [f["check"] for f in rec.summary["findings"]][0] == "login"
