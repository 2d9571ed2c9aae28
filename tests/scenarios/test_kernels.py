"""Warm kernels: a pooled run's record has the form of a cold run's, and no state survives a run."""
from __future__ import annotations

import nbformat
import pytest

from smartops_nb.execution import kernels
from smartops_nb.execution.flow import investigate
from smartops_nb.execution.prepare import prepare
from smartops_nb.records.archive import open_archive
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
        warm = Record(investigate(prep, open_archive(archive), progress=False, cell_timeout=120, kernel=kernel))
    cold = Record(investigate(prep, open_archive(archive), progress=False, cell_timeout=120))
    assert warm.summary["status"] == cold.summary["status"] == "completed"
    assert warm.summary["diagnosis"]["causes"] == cold.summary["diagnosis"]["causes"] == [
        "connections-near-limit", "idle-connection-leak"]
    assert warm.summary["diagnosis"]["confirmed"] and cold.summary["diagnosis"]["confirmed"]
    assert _form(warm) == _form(cold)  # same metadata keys, cells, execution counts (warm-up left no trace)
    assert "__smartops_warmup" not in nbformat.writes(warm.nb)
    assert not kernel.folder.exists()  # the lease's end shut the kernel down and removed its folder


@pytest.mark.timeout(180)
@pytest.mark.parametrize("start", kernels.KERNEL_STARTS)
def test_a_leased_kernel_that_died_in_the_pool_is_restarted_and_the_run_completes(healthy_sandbox, sandbox_params,
                                                                                   archive, start):
    import os
    import signal

    kernel = kernels.start_warm_kernel(start=start)
    try:
        kernel.set_env({"SMARTOPS_TEST_ENV": "set"})  # over the shell channel alone: a warm kernel answers
        os.kill(kernel.km.provisioner.pid, signal.SIGKILL)  # dies while it waits in the pool
        with pytest.raises(RuntimeError, match="died"):   # noticed by its process, not after set_env's 30 s
            kernel.set_env({"SMARTOPS_TEST_ENV": "again"}, timeout=30)
        prep = prepare("db-pool-exhausted", (), sandbox_params)
        rec = Record(investigate(prep, open_archive(archive), progress=False, cell_timeout=120, kernel=kernel))
    finally:
        kernel.close()
    assert rec.summary["status"] == "completed", rec.summary.get("error")
    assert [f["check"] for f in rec.summary["findings"]][0] == "login"


@pytest.mark.timeout(300)
def test_runs_ended_every_way_release_all_they_opened(tmp_path, healthy_sandbox, sandbox_params):
    """Completed, ended from outside (a shutdown, a handed-back job), past their deadline, and killed under
    the run: each releases every descriptor it opened (sockets, ZeroMQ contexts, heartbeat threads, loops).
    The slow run samples a real Redis for 60 s (against nothing its steps fail at once, and a forked
    kernel starts too fast for the run to still be going when it is ended)."""
    import os
    import signal
    import threading
    import time

    from smartops_nb.execution.flow import investigate_on_pool
    from smartops_nb.waiting import until
    from smartops_nb.resources import open_descriptors
    from tests.fixtures.soak import BASE

    slow = prepare("high-latency", cli={**sandbox_params, "sample_seconds": 60.0})
    quick = prepare("db-pool-exhausted", cli=BASE)
    archive = tmp_path / "incidents"

    def ended_from_outside():
        handle = kernels.RunHandle()
        threading.Timer(3, handle.end, ("test: ended from outside",)).start()
        return investigate_on_pool(slow, open_archive(archive), pool, incident="outside", handle=handle)

    def killed_under_the_run():
        handle = kernels.RunHandle()

        def kill():  # once the run has its kernel (a cold start can take seconds) and is under way
            if until(lambda: handle.kernel is not None, 60, 0.05):
                time.sleep(2)
                os.kill(handle.kernel.km.provisioner.pid, signal.SIGKILL)
        threading.Thread(target=kill).start()
        return investigate_on_pool(slow, open_archive(archive), pool, incident="killed", handle=handle)

    ways = {"completed": lambda: investigate_on_pool(quick, open_archive(archive), pool, incident="ok"),
            "ended": ended_from_outside,
            "deadline": lambda: investigate_on_pool(slow, open_archive(archive), pool, incident="late", deadline=3),
            "killed": killed_under_the_run}
    with kernels.KernelPool(0) as pool:
        for run in ways.values():  # once each: imports, caches and loops of this thread settle
            run()
        base = open_descriptors()
        outcomes = {}
        for name, run in ways.items():
            for _ in range(2):
                result = run()
                outcomes[name] = (result.summary["status"], result.summary.get("error", ""))
        after = open_descriptors()
    assert outcomes["completed"][0] == "completed"
    assert outcomes["ended"][1].startswith("interrupted: test: ended from outside")
    assert outcomes["deadline"][1].startswith("interrupted: deadline")
    assert outcomes["killed"][0] == "failed"
    assert after <= base + 4, f"{after - base} descriptors more after 8 runs ({outcomes})"


@pytest.mark.timeout(300)
def test_runs_in_a_fresh_context_each_leave_no_event_loop_behind(tmp_path):
    """Procrastinate runs each sync job in a fresh copy of the context on a reused thread, where
    jupyter_client's blocking calls make a new event loop every time: the run closes it (a worker leaked
    one epoll and a socket pair per job, and died of them under ulimit -n 256 after ~80 jobs)."""
    import contextvars
    from concurrent.futures import ThreadPoolExecutor

    from smartops_nb.execution.flow import investigate_on_pool
    from smartops_nb.resources import open_descriptors
    from tests.fixtures.soak import BASE

    from smartops_nb.records.archive import open_archive

    prep = prepare("db-pool-exhausted", cli=BASE)
    archive = open_archive(tmp_path)
    with ThreadPoolExecutor(2) as ex, kernels.KernelPool(0) as pool:
        def job(i):
            return ex.submit(contextvars.copy_context().run, investigate_on_pool, prep, archive, pool,
                             incident=f"ctx-{i}").result()
        for i in range(3):
            job(i)
        base = open_descriptors()
        results = [job(i) for i in range(8)]
        after = open_descriptors()
    assert all(r.summary["status"] == "completed" for r in results)
    assert after <= base + 2, f"{after - base} descriptors more after 8 jobs"
