"""The fork server: kernels forked from one template process are ordinary, isolated, killable kernels,
the template comes back when it dies, and neither side keeps descriptors or zombies."""
from __future__ import annotations

import os
import signal

import pytest

from smartops_nb.execution import forkserver, kernels
from smartops_nb.resources import open_descriptors
from smartops_nb.waiting import until


def _fork_kernel() -> kernels.WarmKernel:
    return kernels.start_warm_kernel(start="fork", warmup="")


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _fd_targets(pid: int) -> dict[int, str]:
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile
            pass
    return out


def _children(pid: int) -> list[int]:
    kids = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if _ppid(int(p)) == pid:
                    kids.append(int(p))
            except (OSError, IndexError, ValueError):
                pass
    return kids


@pytest.mark.timeout(240)
def test_a_forked_kernel_is_its_own_process_group_and_runs_code():
    kernel = _fork_kernel()
    try:
        pid = kernel.km.provisioner.pid
        assert isinstance(kernel.km.provisioner, forkserver.ForkProvisioner)
        assert os.getpgid(pid) == pid and os.getsid(pid) == pid  # setsid: killpg reaches all it starts
        assert _ppid(pid) == forkserver.server().template_pid   # forked, not spawned
        kernel.set_env({"SMARTOPS_FORK_PROBE": "yes"})
        kernels._silent(kernel.km, "import os, matplotlib\n"
                        "assert os.environ['SMARTOPS_FORK_PROBE'] == 'yes'\n"
                        "assert os.getcwd() == " + repr(str(__import__('smartops_nb.catalog').catalog.notebook_dir())) + "\n"
                        "assert 'inline' in matplotlib.get_backend(), matplotlib.get_backend()\n", 60)
        kernel.end("test: ended")  # a deadline's way: SIGKILL to the group
        assert until(lambda: not os.path.exists(f"/proc/{pid}") or _ppid(pid) != forkserver.server().template_pid,
                     30, 0.05)
    finally:
        kernel.close()


@pytest.mark.timeout(240)
def test_a_warm_forked_kernel_draws_inline_keeps_no_history_and_has_no_debugger():
    kernel = kernels.start_warm_kernel(start="fork")  # the pools' warm-up: the inline backend selected
    try:
        outputs: list[dict] = []
        with kernels._blocking_client(kernel.km) as kc:
            info = kc.kernel_info(reply=True, timeout=30)["content"]
            reply = kc.execute_interactive(
                "import matplotlib.pyplot as plt, threading, debugpy\n"
                "assert get_ipython().history_manager.enabled is False\n"
                "assert not [t for t in threading.enumerate() if 'History' in t.name]\n"
                "plt.plot([1, 2, 3])\n", timeout=60, output_hook=outputs.append)
        assert reply["content"]["status"] == "ok", reply["content"]
        assert "debugger" not in info.get("supported_features", []), info  # debugpy is not loaded for it
        figures = [m for m in outputs if m["msg_type"] == "display_data" and "image/png" in m["content"]["data"]]
        assert len(figures) == 1, [m["msg_type"] for m in outputs]  # the inline backend's hook drew it
    finally:
        kernel.close()


@pytest.mark.timeout(240)
def test_no_descriptor_of_the_template_or_the_host_leaks_into_a_kernel():
    kernel = _fork_kernel()
    try:
        pid, template = kernel.km.provisioner.pid, forkserver.server().template_pid
        theirs = {t for fd, t in _fd_targets(template).items() if fd > 2}
        ours = {t for fd, t in _fd_targets(os.getpid()).items() if fd > 2 and t.startswith(("socket:", "pipe:"))}
        in_kernel = set(_fd_targets(pid).values())
        assert theirs and not (theirs & in_kernel), theirs & in_kernel
        assert not (ours & in_kernel), ours & in_kernel
    finally:
        kernel.close()


@pytest.mark.timeout(300)
def test_killing_the_template_starts_another_and_leaves_no_zombie():
    server = forkserver.server()
    first = _fork_kernel()
    first.close()
    old, starts = server.template_pid, server.starts
    os.kill(old, signal.SIGKILL)
    assert until(lambda: _children(os.getpid()).count(old) == 0 or _state(old) == "Z", 10, 0.05)
    kernel = _fork_kernel()  # noticed at the next fork: a new template
    try:
        assert server.starts == starts + 1 and server.template_pid not in (None, old)
        assert _ppid(kernel.km.provisioner.pid) == server.template_pid
        assert not os.path.exists(f"/proc/{old}")  # the dead template was reaped, not left a zombie
    finally:
        kernel.close()


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


@pytest.mark.timeout(600)
def test_fifty_kernels_started_and_released_leave_descriptors_flat_and_no_zombies():
    for _ in range(5):  # the template is up, this thread's loops and caches made
        _fork_kernel().close()
    kernels.close_thread_loop()
    base, before = open_descriptors(), _fd_targets(os.getpid())
    template = forkserver.server().template_pid
    for _ in range(50):
        _fork_kernel().close()
    kernels.close_thread_loop()
    after = open_descriptors()
    new = {fd: t for fd, t in _fd_targets(os.getpid()).items() if before.get(fd) != t}
    assert after <= base + 2, f"{after - base} descriptors more after 50 kernels: {new}"
    assert forkserver.server().template_pid == template  # the same template served them all
    # every kernel ended and the template reaped it: no child left, zombie or not
    assert until(lambda: _children(template), 30, 0.1, done=lambda kids: not kids) == []
