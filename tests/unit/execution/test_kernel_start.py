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


def test_a_kernel_command_line_is_read_as_traitlets_reads_it():
    from traitlets import Bool
    from traitlets.config import Configurable
    from traitlets.config.loader import KVArgParseConfigLoader

    from smartops_nb.kernel.template import kernel_command_line_config

    class HistoryManager(Configurable):  # configured by class name, as IPython's is
        enabled = Bool(True).tag(config=True)

    config = kernel_command_line_config(["-f", "/run/k.json", *kernels.RUN_KERNEL_ARGS])
    assert config.IPKernelApp.connection_file == "/run/k.json"
    assert HistoryManager(config=config).enabled is False  # the trait converts the text when it loads it
    parsed = KVArgParseConfigLoader(list(kernels.RUN_KERNEL_ARGS)).load_config()
    assert config.HistoryManager == parsed.HistoryManager  # what traitlets' own parser makes of it
    assert kernel_command_line_config(["-f", "/run/k.json"]).IPKernelApp.connection_file == "/run/k.json"
    for argv in ([], ["-f"], ["-f", "--debug"], ["--debug", "-f", "k.json"], ["-f", "k.json", "--debug"],
                 ["-f", "k.json", "--HistoryManager.enabled"], ["-f", "k.json", "--a.b.c=1"]):
        assert kernel_command_line_config(argv) is None, argv  # traitlets' own parser reads these
