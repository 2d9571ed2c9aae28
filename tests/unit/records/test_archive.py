"""The archive: records and index written together, a hash chain that names every change made
outside the tool, list/search/show/export, reindex, concurrent writers, and a full disk."""
from __future__ import annotations

import json
import shutil
import sqlite3
import threading
from pathlib import Path

import nbformat
import pytest

from smartops_nb.params import iso, utcnow
from smartops_nb.records import archive as archive_mod  # `archive` is the conftest fixture (a folder)
from smartops_nb.records import storage
from smartops_nb.records.archive import open_archive
from smartops_nb.records.entries import GENESIS, IndexUnavailable
from smartops_nb.records.index_sqlite import INDEX_NAME
from smartops_nb.records.storage import file_sha256
from tests.fixtures.archives import archive_list, names, smartops, write
from tests.conftest import at_once


# -- verify and reindex ----------------------------------------------------------------------------
@pytest.fixture
def four(archive) -> list[Path]:
    return [write(archive, started=f"2026-11-2{i}T10:00:00Z", incident_id=f"INC-{i}") for i in range(1, 5)]


# -- writing ---------------------------------------------------------------------------------------
def test_record_and_its_index_entry_are_written_together(archive):
    path = write(archive)
    (row,) = archive_list(archive)
    assert row["name"] == path.name and row["sha256"] == file_sha256(path)
    assert [p.name for p in archive.iterdir() if p.name.startswith(".record-")] == []  # no temp file left
    con = sqlite3.connect(archive / INDEX_NAME)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert open_archive(archive).verify().ok


def test_same_second_records_get_distinct_names_and_chain_in_order(archive):
    paths = [write(archive) for _ in range(3)]
    assert [p.name for p in paths] == ["2026-11-26T14-03-12Z_db-pool-exhausted_prod.ipynb",
                                       "2026-11-26T14-03-12Z_db-pool-exhausted_prod_2.ipynb",
                                       "2026-11-26T14-03-12Z_db-pool-exhausted_prod_3.ipynb"]
    con = sqlite3.connect(archive / INDEX_NAME)
    rows = con.execute("SELECT prev_hash, entry_hash FROM records ORDER BY seq").fetchall()
    assert rows[0][0] == GENESIS and rows[1][0] == rows[0][1] and rows[2][0] == rows[1][1]


def test_concurrent_threads_never_share_a_name_and_keep_a_valid_chain(archive):
    paths = []
    errors = at_once(lambda: paths.extend(write(archive) for _ in range(3)))
    assert not errors and len(set(paths)) == 24
    report = open_archive(archive).verify()
    assert report.ok and report.entries == 24, report.problems


def test_an_index_that_refuses_the_entry_keeps_the_record_and_says_so(archive, caplog):
    archive.mkdir()
    (archive / INDEX_NAME).write_bytes(b"this is not a database" * 100)
    path = write(archive)
    assert path.exists() and "NOT INDEXED" in caplog.text and "reindex" in caplog.text
    problems = [(p.kind, p.name) for p in open_archive(archive).verify().problems]
    assert problems == [("index-altered", INDEX_NAME), ("added", path.name)]


def test_a_clean_archive_verifies(archive, four):
    out = smartops("archive", "verify", "--archive", str(archive))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "4 indexed, 4 record files" in out.stdout and "intact" in out.stdout


def test_verify_names_each_record_modified_removed_or_added(archive, four, cli):
    edited, deleted = four[1], four[2]
    nb = nbformat.read(edited, as_version=4)
    nb.metadata["smartops"]["diagnosis"]["summary"] = "nothing to see here"  # a hand edit
    nbformat.write(nb, edited)
    deleted.unlink()
    copied = archive / "2026-11-30T00-00-00Z_db-pool-exhausted_prod.ipynb"
    shutil.copy(four[0], copied)

    out = cli("archive", "verify", "--archive", str(archive))
    assert out.returncode == 1, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert any(l.startswith("MODIFIED") and edited.name in l for l in lines), out.stdout
    assert any(l.startswith("REMOVED") and deleted.name in l for l in lines), out.stdout
    assert any(l.startswith("ADDED") and copied.name in l for l in lines), out.stdout
    assert "3 problem(s)" in lines[-1]
    assert four[0].name not in "\n".join(lines[:-1]) and four[3].name not in out.stdout


def test_an_anchor_catches_the_newest_record_deleted_with_its_index_entry(archive, four, cli):
    """The chain alone cannot see its end cut off; an entry published elsewhere (a notification) can."""
    newest = four[-1]
    published = open_archive(archive).entry(newest.name)["entry_hash"]
    assert cli("archive", "verify", "--archive", str(archive), "--anchor", published[:12]).returncode == 0
    con = sqlite3.connect(archive / INDEX_NAME)
    with con:
        con.execute("DELETE FROM records WHERE name = ?", (newest.name,))
    con.close()
    newest.unlink()

    assert open_archive(archive).verify().ok  # a consistent, shorter chain: nothing to see without the anchor
    out = cli("archive", "verify", "--archive", str(archive), "--anchor", published)
    assert out.returncode == 1 and out.stdout.startswith("ANCHOR-MISSING") and published[:16] in out.stdout
    bad = cli("archive", "verify", "--archive", str(archive), "--anchor", "not-a-hash")
    assert bad.returncode == 2 and "--anchor 'not-a-hash'" in bad.stderr and len(bad.stderr.splitlines()) == 1


def test_verify_names_an_index_entry_altered_or_removed_by_hand(archive, four):
    con = sqlite3.connect(archive / INDEX_NAME)
    with con:
        con.execute("UPDATE records SET status = 'completed', severity = 'P4' WHERE name = ?", (four[0].name,))
        con.execute("DELETE FROM records WHERE name = ?", (four[2].name,))
    con.close()
    problems = {(p.kind, p.name) for p in open_archive(archive).verify().problems}
    assert ("index-altered", four[0].name) in problems      # fields no longer match the entry hash
    assert ("index-altered", four[3].name) in problems      # the chain skips the deleted entry
    assert ("added", four[2].name) in problems              # its file has no entry any more


def test_reindex_after_the_index_is_lost_restores_list(archive, four, cli):
    before = json.loads(cli("archive", "list", "--archive", str(archive), "--json").stdout)
    for f in archive.glob(INDEX_NAME + "*"):
        f.unlink()
    lost = cli("archive", "list", "--archive", str(archive))
    assert lost.returncode == 1 and "reindex" in lost.stderr

    out = cli("archive", "reindex", "--archive", str(archive))
    assert out.returncode == 0 and "reindexed 4 records" in out.stdout and "no index before" in out.stdout
    after = json.loads(cli("archive", "list", "--archive", str(archive), "--json").stdout)
    assert after == before
    assert cli("archive", "verify", "--archive", str(archive)).returncode == 0


def test_reindex_says_what_changed_and_skips_notebooks_that_are_not_records(archive, four):
    four[0].unlink()
    nbformat.write(nbformat.v4.new_notebook(), archive / "scratch.ipynb")
    r = open_archive(archive).reindex()
    assert r.previous == 4 and len(r.indexed) == 3 and r.dropped == [four[0].name]
    assert [n for n, _ in r.skipped] == ["scratch.ipynb"]
    report = open_archive(archive).verify()
    assert [(p.kind, p.name) for p in report.problems] == [("added", "scratch.ipynb")]


def test_a_record_published_during_reindex_keeps_its_index_entry(archive, four, monkeypatch):
    """The writer blocks on reindex's lock before it publishes, then indexes its record after reindex."""
    list_files, writer, written = storage.record_files, [], []

    def record_files_while_a_run_publishes(folder):
        if not writer:  # reindex holds the write lock by now: a run that finishes meanwhile must wait
            t = threading.Thread(target=lambda: written.append(write(archive, started="2026-11-29T10:00:00Z")))
            writer.append(t)
            t.start()
            t.join(timeout=1.5)
            assert t.is_alive(), "the writer published while reindex was reading the files"
        return list_files(folder)

    monkeypatch.setattr(storage, "record_files", record_files_while_a_run_publishes)
    r = open_archive(archive).reindex()
    writer[0].join(timeout=30)
    assert written and len(r.indexed) == 4 and written[0].name not in r.indexed
    report = open_archive(archive).verify()
    assert report.ok and report.entries == 5, report.problems


def test_reindex_leaves_a_locked_index_alone(archive, four, monkeypatch):
    monkeypatch.setattr(archive_mod, "BUSY_TIMEOUT_S", 1)
    holder = sqlite3.connect(archive / INDEX_NAME, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another run is writing
    try:
        with pytest.raises(IndexUnavailable) as e:
            open_archive(archive).reindex()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "database is locked" in str(e.value) and "\n" not in str(e.value)
    assert not list(archive.glob("*.broken-*"))  # a busy index is not a broken one
    assert open_archive(archive).verify().ok


def test_review_reads_the_same_rows_from_the_records_when_the_index_is_lost(archive, four):
    from smartops_nb.reports import review

    write(archive, started="2026-11-29T10:00:00Z", causes=["idle-connection-leak"])  # actions, causes, confirmed
    indexed = review.load_rows(archive)[review.COLUMNS]
    for f in archive.glob(INDEX_NAME + "*"):
        f.unlink()
    from_files = review.load_rows(archive)[review.COLUMNS]
    assert from_files.to_dict("records") == indexed.to_dict("records") and len(indexed) == 5
    assert from_files["actions_executed"].iloc[-1] == ["terminate-idle on smartamazon"]


def test_reindex_moves_a_damaged_index_aside(archive, four):
    index = archive / INDEX_NAME
    for f in archive.glob(INDEX_NAME + "*"):
        f.unlink()
    index.write_bytes(b"this is not a database" * 100)
    r = open_archive(archive).reindex()
    assert r.moved_aside and r.moved_aside.read_bytes().startswith(b"this is not") and r.previous is None
    assert len(r.indexed) == 4 and open_archive(archive).verify().ok


# -- list, search, show ----------------------------------------------------------------------------
def test_list_is_newest_first_and_filters(archive, cli):
    now = utcnow()
    recent, older = iso(now.replace(microsecond=0)), "2020-01-01T00:00:00Z"
    a = write(archive, started=older, causes=["idle-connection-leak"], severity="P1", environment="prod")
    b = write(archive, runbook="redis-memory-full", started=recent, severity="P2", environment="staging",
              causes=["no-eviction-policy"])
    c = write(archive, runbook="disk-full", started=recent, severity="P2", environment="prod", status="failed")
    rows = archive_list(archive)
    assert names(rows)[-1] == a.name and set(names(rows)[:2]) == {b.name, c.name}
    assert names(archive_list(archive, runbook="disk-full")) == [c.name]
    assert set(names(archive_list(archive, severity="P2"))) == {b.name, c.name}
    assert set(names(archive_list(archive, environment="prod"))) == {a.name, c.name}
    assert names(archive_list(archive, cause="idle-connection-leak")) == [a.name]
    assert set(names(archive_list(archive, since="7d"))) == {b.name, c.name}
    assert names(archive_list(archive, since="2019-06-01T00:00:00Z", severity="P1")) == [a.name]
    assert names(archive_list(archive, status="failed")) == [c.name]
    assert len(open_archive(archive).list(limit=1)) == 1

    out = cli("archive", "list", "--archive", str(archive), "--cause", "no-eviction-policy", "--json")
    assert out.returncode == 0 and names(json.loads(out.stdout)) == [b.name]
    out = cli("archive", "list", "--archive", str(archive), "--since", "last tuesday")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "--since" in out.stderr


def test_search_finds_words_in_findings_outputs_and_parameters(archive, cli):
    a = write(archive, finding="12 connections idle in transaction for 9 minutes", causes=["idle-connection-leak"])
    b = write(archive, runbook="disk-full", output="/var/log/app.log grew to 31 GiB\n")
    assert names(open_archive(archive).search("transaction")) == [a.name]
    assert names(open_archive(archive).search("idle-connection-leak")) == [a.name]  # a cause code as a phrase
    assert names(open_archive(archive).search("GiB")) == [b.name]
    assert set(names(open_archive(archive).search("idle_minutes"))) == {a.name, b.name}
    out = cli("archive", "search", "--archive", str(archive), '"unclosed phrase')
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "search syntax" in out.stderr


def test_bad_record_reference_exits_2(archive, four, cli):
    out = cli("archive", "show", "no-such-record", "--archive", str(archive))
    assert out.returncode == 2 and "no record 'no-such-record'" in out.stderr
    out = cli("archive", "show", "2026-11", "--archive", str(archive))
    assert out.returncode == 2 and "matches 4 records" in out.stderr


def test_every_archive_command_has_help(cli):
    for cmd in ("list", "search", "show", "export", "verify", "reindex"):
        out = cli("archive", cmd, "--help")
        assert out.returncode == 0 and "--archive DIR" in out.stdout, cmd

