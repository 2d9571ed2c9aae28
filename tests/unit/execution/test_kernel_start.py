"""How pool kernels start: fork by default, spawn on request, and only kernels this Python can become fork."""
from __future__ import annotations

import sys

import pytest

from smartops_nb.execution import forkserver, kernels


def test_pools_fork_unless_told_to_spawn(monkeypatch):
    monkeypatch.delenv(kernels.KERNEL_START_ENV, raising=False)
    assert kernels.kernel_start() == "fork"
    monkeypatch.setenv(kernels.KERNEL_START_ENV, " Spawn ")
    assert kernels.kernel_start() == "spawn"
    monkeypatch.setenv(kernels.KERNEL_START_ENV, "vfork")
    with pytest.raises(ValueError, match="SMARTOPS_KERNEL_START must be one of fork, spawn"):
        kernels.kernel_start()


def test_only_this_interpreters_ipykernel_is_forked():
    assert forkserver.forkable([sys.executable, "-m", "ipykernel_launcher", "-f", "k.json"])
    assert not forkserver.forkable(["/opt/other/python", "-m", "ipykernel_launcher", "-f", "k.json"])
    assert not forkserver.forkable([sys.executable, "-m", "other_kernel", "-f", "k.json"])
    assert not forkserver.forkable(["julia", "-i"])
