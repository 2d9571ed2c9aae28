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


def test_a_migrate_stopped_after_the_records_is_finished_by_running_it_again(tmp_path, cli, monkeypatch):
    from smartops_nb.records.archive import Archive

    old, new = tmp_path / "old", tmp_path / "new"
    write(old, incident_id="INC-1")
    before = seed_people(open_archive(old))

    def stopped(self, dst):
        raise KeyboardInterrupt  # the operator's Ctrl-C, after the records' transaction committed

    with monkeypatch.context() as m:
        m.setattr(Archive, "_copy_tables", stopped)
        try:
            open_archive(old).migrate(open_archive(new))
        except KeyboardInterrupt:
            pass
    assert len(open_archive(new).list()) == 1 and not people_of(open_archive(new))["tokens"]
    out = cli("archive", "migrate", "--archive", str(old), "--to", str(new))
    assert out.returncode == 0 and "resumed" in out.stdout and "intact" in out.stdout, out.stdout + out.stderr
    assert people_of(open_archive(new)) == before
    again = cli("archive", "migrate", "--archive", str(old), "--to", str(new))  # complete now: refused
    assert again.returncode == 2 and "not empty" in again.stderr and people_of(open_archive(new)) == before
    other = tmp_path / "other"
    write(other, incident_id="INC-2")
    refused = cli("archive", "migrate", "--archive", str(other), "--to", str(new))
    assert refused.returncode == 2 and "not empty" in refused.stderr  # another archive's records: refused
