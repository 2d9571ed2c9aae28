"""Retention on a folder archive (SQLite index): files go, their chain entries stay as tombstones."""
from __future__ import annotations

import sqlite3

from smartops_nb.records.index_sqlite import INDEX_NAME
from smartops_nb.records.archive import open_archive
from tests.fixtures.archives import synthetic


def put(folder, **kw):
    nb, summary = synthetic(**kw)
    return open_archive(folder).write(nb, summary)


def test_prune_deletes_old_files_keeps_entries_and_open_incidents(tmp_path):
    folder = tmp_path / "incidents"
    resolved = [put(folder, started="2024-01-01T10:00:00Z", incident_id="INC-OLD", causes=["disk-full"]),
                put(folder, started="2024-01-01T11:00:00Z", incident_id="INC-OLD")]
    still_open = put(folder, started="2024-02-01T10:00:00Z", incident_id="INC-OPEN", causes=["disk-full"])
    confirmed = put(folder, started="2024-03-01T10:00:00Z", incident_id="INC-C1", causes=["disk-full"])
    closing = put(folder, started="2024-03-01T11:00:00Z", incident_id="INC-C1")
    recent = put(folder, started="2030-01-01T10:00:00Z", incident_id="INC-NEW")
    tip = open_archive(folder).verify().tip

    dry = open_archive(folder).prune("400d", dry_run=True)
    assert len(dry.pruned) == 4 and all(p.exists() for p in (*resolved, confirmed, closing))

    kept = open_archive(folder).prune("400d", keep_confirmed=True)
    assert set(kept.pruned) == {resolved[1].name, closing.name}
    assert set(kept.kept_confirmed) == {resolved[0].name, confirmed.name}
    assert kept.kept_open == [still_open.name]
    assert not resolved[1].exists() and resolved[0].exists() and still_open.exists() and recent.exists()

    open_archive(folder).prune("400d")
    assert not any(p.exists() for p in (*resolved, confirmed, closing)) and still_open.exists()
    report = open_archive(folder).verify(anchors=[tip])
    assert report.ok and report.entries == 6 and report.files == 2, report.problems
    assert set(report.pruned) == {p.name for p in (*resolved, confirmed, closing)}
    con = sqlite3.connect(folder / INDEX_NAME)
    why = con.execute("SELECT why FROM tombstones").fetchall()
    assert len(why) == 4 and all("--older-than 400d" in w[0] for w in why)


def test_a_pruned_file_that_comes_back_is_ignored_but_a_deleted_one_without_tombstone_is_removed(tmp_path):
    folder = tmp_path / "incidents"
    old = put(folder, started="2024-01-01T10:00:00Z", incident_id="")
    gone = put(folder, started="2030-01-01T10:00:00Z", incident_id="")
    open_archive(folder).prune("400d")
    gone.unlink()
    problems = [(p.kind, p.name) for p in open_archive(folder).verify().problems]
    assert problems == [("removed", gone.name)] and not old.exists()


def test_prune_refuses_a_bad_age(tmp_path):
    import pytest

    put(tmp_path, started="2024-01-01T10:00:00Z")
    with pytest.raises(ValueError):
        open_archive(tmp_path).prune("a while")


def test_migrate_between_folders_keeps_every_entry_and_tombstone(tmp_path):
    src, dst = tmp_path / "old", tmp_path / "new"
    put(src, started="2024-01-01T10:00:00Z", incident_id="")
    put(src, started="2030-01-01T10:00:00Z", incident_id="")
    open_archive(src).prune("400d")
    m = open_archive(src).migrate(open_archive(dst))
    assert len(m.copied) == 1 and m.tombstones == 1
    report = open_archive(dst).verify()
    assert report.ok and report.tip == open_archive(src).verify().tip and len(report.pruned) == 1
