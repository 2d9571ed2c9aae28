"""support.files: a file is written whole or not at all, and one holder at a time gets the lock."""
from __future__ import annotations

import fcntl
import os

import pytest

from smartops_nb.support.files import locked, replace_atomically, write_synced


def test_replace_atomically_writes_text_and_bytes_and_sets_the_mode(tmp_path):
    target = tmp_path / "state.json"
    target.write_text("old")
    assert replace_atomically(target, '{"new": true}') == target
    assert target.read_text() == '{"new": true}'
    replace_atomically(target, b"\x00bytes", sync=True, mode=0o444)
    assert target.read_bytes() == b"\x00bytes" and (target.stat().st_mode & 0o777) == 0o444
    assert os.listdir(tmp_path) == ["state.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "state.json"
    target.write_text("old")
    with pytest.raises(UnicodeEncodeError):
        replace_atomically(target, "cannot encode \udc80")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["state.json"]


def test_write_synced(tmp_path):
    with open(tmp_path / "f", "wb") as f:
        write_synced(f, b"durable")
    assert (tmp_path / "f").read_bytes() == b"durable"


def test_locked_excludes_another_holder_until_the_block_ends(tmp_path):
    lock = tmp_path / ".lock"

    def try_lock() -> bool:
        with open(lock, "a") as other:   # another open file description: flock treats it as another holder
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            fcntl.flock(other, fcntl.LOCK_UN)
            return True

    with locked(lock):
        assert not try_lock()
    assert try_lock()
