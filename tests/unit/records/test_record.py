"""Record names sort by time, never collide, and writes are atomic (through the archive's one writer)."""
from __future__ import annotations


import nbformat

from smartops_nb.records import record
from smartops_nb.records.index_sqlite import INDEX_NAME
from smartops_nb.records.archive import open_archive
from tests.conftest import at_once

SUMMARY = {"runbook": "db-pool-exhausted", "environment": "demo", "started_at": "2026-11-26T14:03:12Z"}


def test_name_sorts_by_time_and_says_what_it_is():
    assert record.record_name(SUMMARY) == "2026-11-26T14-03-12Z_db-pool-exhausted_demo.ipynb"
    assert record.record_name({**SUMMARY, "environment": "prod/eu 1"}).endswith("_db-pool-exhausted_prod-eu-1.ipynb")


def test_a_long_label_value_gives_a_short_name_with_a_hash(tmp_path):
    """A 300-character ``env`` label gave "File name too long" and no record at all."""
    names = {record.record_name({**SUMMARY, "environment": "e" * 300 + end}) for end in ("1", "2")}
    assert len(names) == 2 and all(len(n.encode()) < 160 for n in names)
    assert all(n.startswith("2026-11-26T14-03-12Z_db-pool-exhausted_eeee") for n in names)
    nb = nbformat.v4.new_notebook()
    summary = {**SUMMARY, "environment": "x/" * 400}
    nb.metadata["smartops"] = summary
    assert open_archive(tmp_path).write(nb, summary).exists()


def test_a_name_too_long_for_any_file_system_is_no_record_name():
    from smartops_nb.records.storage import is_record_name

    assert is_record_name(record.record_name(SUMMARY))
    assert not is_record_name("a" * 5_000 + ".ipynb")


def test_concurrent_writes_in_the_same_second_never_share_a_name(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["smartops"] = SUMMARY
    paths = []
    errors = at_once(lambda: paths.append(open_archive(tmp_path).write(nb, SUMMARY)), 12)
    assert not errors and len(set(paths)) == 12
    files = [p.name for p in tmp_path.iterdir() if not p.name.startswith(INDEX_NAME)]
    assert sorted(files) == sorted(p.name for p in paths)  # no temp files left
    report = open_archive(tmp_path).verify()
    assert report.ok and report.entries == 12, report.problems  # each with its index entry
