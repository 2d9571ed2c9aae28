"""`archive migrate` copies what an archive keeps beside its records too: who approved which plan,
the personal tokens, the post-incident checklist, its idempotency keys and the lessons."""
from __future__ import annotations

from smartops_nb.records.archive import open_archive
from tests.fixtures.archives import people_of, seed_people, write


def test_migrate_keeps_who_approved_the_tokens_and_the_checklist(tmp_path, cli):
    old, new = tmp_path / "old", tmp_path / "new"
    write(old, incident_id="INC-1")
    before = seed_people(open_archive(old))
    assert before["plan"] == ("pending", [("approve", "alice", "https://idp.example")]) and before["tokens"]
    out = cli("archive", "migrate", "--archive", str(old), "--to", str(new))
    assert out.returncode == 0 and "intact" in out.stdout, out.stdout + out.stderr
    assert people_of(open_archive(new)) == before


def test_migrate_of_an_archive_without_people_tables_copies_the_records_only(tmp_path, cli):
    old, new = tmp_path / "old", tmp_path / "new"
    write(old)
    out = cli("archive", "migrate", "--archive", str(old), "--to", str(new))
    assert out.returncode == 0, out.stdout + out.stderr
    target = open_archive(new)
    assert len(target.list()) == 1 and target.verify().ok
    with target.tables("people") as con, target.tables("postincident") as items:
        assert con is None and items is None  # nothing made that the source did not have
