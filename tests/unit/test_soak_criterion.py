"""The soak test's "flat" (tests/fixtures/soak.flat): noise of the runs in flight passes, a leak fails."""
from __future__ import annotations

from tests.fixtures.soak import Sample, flat


def _series(fds: list[int], rss: float = 110.0) -> list[Sample]:
    return [Sample(0, 3, 5.0)] + [Sample(10 * (i + 1), n, rss) for i, n in enumerate(fds)]


def test_descriptors_that_come_and_go_with_the_runs_in_flight_are_flat():
    # a worker soak of CI (load 16): kernels starting at some samples, none at others
    assert flat(_series([86, 86, 39, 45, 83, 104, 41, 90, 44, 86])) == []


def test_a_leak_of_a_few_descriptors_a_run_is_not_flat():
    # the ZeroMQ context nbclient left behind: ~14 descriptors a run, sampled every 10 runs
    leaking = [40 + 14 * 10 * i // 10 for i in range(10)]
    assert flat(_series(leaking))


def test_memory_that_keeps_growing_is_not_flat():
    samples = [Sample(10 * i, 60, 100.0 + 10 * i) for i in range(1, 11)]
    assert any("RSS" in line for line in flat(samples))
