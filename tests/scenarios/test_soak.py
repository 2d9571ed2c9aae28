"""The soak (shortened): one `smartops serve` and one `smartops worker`, each under `ulimit -n 256`,
take many runs; their open descriptors and RSS stay flat and they are alive at the end.

Before the kernel's life had one owner, each run left ~14 descriptors behind (a client's ZeroMQ
context, its heartbeat thread's socket): under this limit serve died after 16 runs. The full soak
(500 runs each) is `python bench/soak.py`; the README quotes its figures.
"""
from __future__ import annotations

import os

import pytest

from tests.fixtures.soak import FD_LIMIT, flat, soak

pytestmark = pytest.mark.scenario

RUNS = int(os.environ.get("SMARTOPS_SOAK_RUNS", "150"))


def _check(result, runs: int) -> None:
    print(result.table())
    assert result.samples[-1].records >= runs, f"{result.samples[-1].records} of {runs} records\n{result.log}"
    assert result.alive_at_end, f"{result.kind} died under ulimit -n {FD_LIMIT}:\n{result.log}"
    assert result.exit_code == 0, f"{result.kind} exited {result.exit_code} on SIGTERM:\n{result.log}"
    assert not flat(result.samples), "\n".join([*flat(result.samples), result.table()])


@pytest.mark.timeout(1800)
def test_serve_soak_descriptors_and_memory_stay_flat(tmp_path):
    _check(soak(tmp_path, RUNS), RUNS)


@pytest.mark.timeout(1800)
def test_worker_soak_descriptors_and_memory_stay_flat(tmp_path, queue_dsn):
    runs = max(RUNS * 2 // 3, 30)
    _check(soak(tmp_path, runs, queue_dsn=queue_dsn), runs)
