"""Warm kernels: a pooled run's record has the form of a cold run's, and no state survives a run."""
from __future__ import annotations

import pytest

from smartops_nb.execution import kernels


@pytest.mark.timeout(120)
def test_a_leased_kernel_is_never_handed_out_twice_and_is_replaced():
    with kernels.KernelPool(1, start_timeout=60) as pool:
        with pool.lease(timeout=60) as first:
            assert first is not None and first.km.has_kernel
        assert not first.km.has_kernel
        with pool.lease(timeout=60) as second:
            assert second is not None and second is not first and second.folder != first.folder

