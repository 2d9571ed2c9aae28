"""Where a kernel's IPC sockets go: the run's private folder, or a short private one when that folder's
path is too deep for a unix socket (pytest-xdist's and CI's temporary folders can be)."""
from __future__ import annotations

import os

from smartops_nb.execution.kernels import SOCKET_PATH_MAX, kernel_manager, release


def _ipc_files_fit(km) -> bool:
    return len(f"{km.ip}-65535".encode()) < SOCKET_PATH_MAX


def test_a_short_run_folder_holds_the_sockets(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    km = kernel_manager("python3", {}, str(folder))
    try:
        assert _ipc_files_fit(km)
        if km.ipc_dir is None:
            assert os.path.dirname(km.ip) == str(folder)
    finally:
        release(km)


def test_a_folder_too_deep_for_a_unix_socket_gets_a_short_private_one_removed_with_the_kernel(tmp_path):
    folder = tmp_path.joinpath(*["deep-folder-of-a-ci-runner"] * 5)
    folder.mkdir(parents=True)
    km = kernel_manager("python3", {}, str(folder))
    short = km.ipc_dir
    try:
        assert short and os.path.dirname(km.ip) == short and _ipc_files_fit(km)
        assert oct(os.stat(short).st_mode & 0o777) == "0o700"  # nobody else's to connect to
    finally:
        release(km)
    assert not os.path.exists(short)
