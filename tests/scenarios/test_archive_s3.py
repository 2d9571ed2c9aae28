"""The team archive: records in S3 (a real SeaweedFS), the index and hash chain in a real PostgreSQL.

Every archive command on the shared backend, many writers on one chain, a store that goes down
while a run finishes, migrating a folder archive, and retention with tombstones.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from smartops_nb.records.entries import GENESIS
from smartops_nb.records.record import RecordWriteError
from smartops_nb.records.archive import open_archive
from tests.conftest import REPO
from tests.fixtures.archives import people_of, seed_people, smartops, synthetic


def _team(archive_dsn, tmp_path, monkeypatch):
    monkeypatch.setenv("SMARTOPS_STATE_DIR", str(tmp_path / "state"))
    return open_archive(f"s3://incidents/{tmp_path.name}", archive_dsn)


@pytest.fixture
def team(seaweedfs, archive_dsn, tmp_path, monkeypatch):
    """An empty s3:// + PostgreSQL archive (its own prefix in the session's SeaweedFS, its own
    database); this process's state (spool) in a temp folder."""
    return _team(archive_dsn, tmp_path, monkeypatch)


@pytest.fixture
def lone_team(own_seaweedfs, archive_dsn, tmp_path, monkeypatch):
    """The same on a SeaweedFS of its own, which the test may stop."""
    return _team(archive_dsn, tmp_path, monkeypatch)


def put(loc, **kw):
    nb, summary = synthetic(**kw)
    return loc.write(nb, summary)


def test_records_index_and_verify_on_s3_and_postgresql(team):
    a = put(team, started="2026-11-26T10:00:00Z", causes=["idle-connection-leak"], finding="idle in transaction")
    b = put(team, started="2026-11-26T11:00:00Z", runbook="disk-full", finding="disk at 97% (2.1 GiB free)",
            severity="P2")
    c = put(team, started="2026-11-26T11:00:00Z", runbook="disk-full", severity="P2")  # same second: _2
    assert str(a).startswith(team.url + "/") and str(c).endswith("_2.ipynb")
    rows = team.list(limit=0)
    assert [r["name"] for r in rows] == [Path(c).name, Path(b).name, Path(a).name]
    assert [r["name"] for r in team.list(limit=0, runbook="disk-full", severity="P2")] \
        == [Path(c).name, Path(b).name]
    assert [r["name"] for r in team.list(limit=0, cause="idle-connection-leak")] == [Path(a).name]
    assert [r["name"] for r in team.search("idle-connection-leak")] == [Path(a).name]
    assert [r["name"] for r in team.search("GiB")] == [Path(b).name]
    report = team.verify()
    assert report.ok and report.entries == 3 and report.files == 3, report.problems


def cli_env(loc, **extra) -> dict[str, str]:
    """The environment a `smartops` subprocess needs for this archive (the AWS_* are already set)."""
    return {"SMARTOPS_ARCHIVE": loc.url, "SMARTOPS_INDEX": loc.index.dsn, **extra}


# -- many writers -------------------------------------------------------------------------------------
WRITER = textwrap.dedent("""
    import sys
    from smartops_nb.records.archive import open_archive
    from tests.fixtures.archives import synthetic

    url, dsn, machine, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    archive = open_archive(url, dsn)
    for i in range(n):
        # both machines use the same start times: same-second names must still be unique
        nb, summary = synthetic(started=f"2026-11-{10 + i // 40:02d}T10:{i % 40:02d}:00Z", incident_id=f"INC-{i}",
                                output=f"written by {machine}")
        archive.write(nb, summary)
    print("done", n)
""")


def _machine(tmp_path: Path, name: str, seaweedfs) -> dict[str, str]:
    """A second machine: its own HOME, state folder and temp folder."""
    home = tmp_path / name
    (home / "tmp").mkdir(parents=True)
    return {**os.environ, **seaweedfs.env(), "HOME": str(home), "SMARTOPS_STATE_DIR": str(home / ".smartops"),
            "TMPDIR": str(home / "tmp")}


@pytest.mark.timeout(900)  # two real runs and 200 writes on a 2-core machine shared with other suites
def test_two_machines_write_200_records_into_one_chain(team, seaweedfs, sandbox, tmp_path):
    """Two processes (own HOME, own temp) write 198 records through the archive's write path while two
    real runbook runs (`smartops run --archive s3://... --index DSN`) finish into the same archive."""
    params = tmp_path / "sandbox.yaml"
    sandbox.heal()
    params.write_text(json.dumps({**sandbox.params(), "api_log_path": str(sandbox.api_log)}))
    procs = []
    for machine in ("alpha", "beta"):
        env = _machine(tmp_path, machine, seaweedfs)
        procs.append(subprocess.Popen([sys.executable, "-c", WRITER, team.url, team.index.dsn, machine, "99"],
                                      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "smartops_nb.cli", "run", "db-pool-exhausted", "-f", str(params),
             "-p", "incident_id", f"INC-REAL-{machine}", "--no-progress", "--archive", team.url,
             "--index", team.index.dsn], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True))
    outs = [p.communicate(timeout=400) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    real = [out.strip().splitlines()[-1] for p, (out, _) in zip(procs, outs) if "smartops_nb.cli" in p.args]
    assert all(r.startswith(team.url + "/") for r in real), real

    report = team.verify()
    assert report.ok, report.problems[:5]
    assert report.entries == 200 and report.files == 200
    rows = team.index.rows()
    assert len({r["name"] for r in rows}) == 200
    # one chain: each entry follows the one before it, none is followed twice (no fork)
    assert rows[0]["prev_hash"] == GENESIS
    assert all(b["prev_hash"] == a["entry_hash"] for a, b in zip(rows, rows[1:]))
    assert len({r["prev_hash"] for r in rows}) == 200
    assert {r["incident_id"] for r in rows} >= {"INC-REAL-alpha", "INC-REAL-beta"}
    out = smartops("archive", "verify", env=cli_env(team))
    assert out.returncode == 0 and "200 indexed, 200 record files" in out.stdout, out.stdout + out.stderr


# -- tampering ---------------------------------------------------------------------------------------
def test_verify_names_an_object_edited_deleted_or_added_in_s3(team, seaweedfs):
    a, b, c = (Path(str(put(team, started=f"2026-11-26T1{i}:00:00Z"))).name for i in range(3))
    fs = team.storage.fs
    key = f"{team.storage.bucket}/{team.storage.prefix}"
    data = fs.cat_file(f"{key}/{a}")
    fs.pipe_file(f"{key}/{a}", data.replace(b"step ran", b"step RAN"))   # edited
    fs.rm_file(f"{key}/{b}")                                              # deleted
    fs.pipe_file(f"{key}/foreign.ipynb", b"{}")                           # added by someone else
    out = smartops("archive", "verify", env=cli_env(team))
    assert out.returncode == 1, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert any(line.startswith("MODIFIED") and a in line for line in lines), out.stdout
    assert any(line.startswith("REMOVED") and b in line for line in lines), out.stdout
    assert any(line.startswith("ADDED") and "foreign.ipynb" in line for line in lines), out.stdout
    assert not any(c in line for line in lines[:-1]), out.stdout
    assert "3 problem(s)" in lines[-1]


def test_an_object_without_its_index_row_is_named_then_adopted(team):
    """A writer that died between the object and its row: verify names it, `reindex --adopt` indexes it
    at the chain tip (entries published before stay valid)."""
    first = put(team, started="2026-11-26T10:00:00Z")
    tip = team.verify().tip
    nb, summary = synthetic(started="2026-11-26T11:00:00Z", runbook="disk-full")
    import nbformat

    orphan = team.storage.put_new(nbformat.writes(nb).encode(), summary)
    problems = [(p.kind, p.name) for p in team.verify().problems]
    assert problems == [("added", orphan)]
    out = smartops("archive", "reindex", "--adopt", env=cli_env(team))
    assert out.returncode == 0 and orphan in out.stdout, out.stdout + out.stderr
    report = team.verify(anchors=[tip])
    assert report.ok and report.entries == 2, report.problems
    assert team.index.rows()[0]["name"] == Path(str(first)).name


# -- the store down while a run finishes ----------------------------------------------------------------
def test_a_record_is_spooled_while_s3_is_down_and_sync_sends_it(lone_team, own_seaweedfs, tmp_path):
    team, seaweedfs = lone_team, own_seaweedfs
    put(team, started="2026-11-26T09:00:00Z")
    seaweedfs.stop()
    nb, summary = synthetic(started="2026-11-26T10:00:00Z", incident_id="INC-DOWN")
    with pytest.raises(RecordWriteError) as e:
        team.write(nb, summary)
    message = str(e.value)
    assert "\n" not in message and seaweedfs.endpoint in message and "spool" in message
    assert Path(e.value.fallback).is_file()
    seaweedfs.start()
    out = smartops("archive", "sync", env=cli_env(team))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "sent 1 of 1" in out.stderr and not Path(e.value.fallback).exists()
    assert team.verify().ok
    rows = team.list(incident_id="INC-DOWN")
    assert [r["started_at"] for r in rows] == ["2026-11-26T10:00:00Z"]  # its own time, not the sync's


def test_a_run_finishing_while_s3_is_down_exits_1_and_the_next_write_sends_it_first(lone_team, own_seaweedfs,
                                                                                      tmp_path):
    """`smartops run` with the store down: exit 1, one line with the reason and the spooled copy;
    the next successful write sends the spooled record first, so the chain keeps their order."""
    team, seaweedfs = lone_team, own_seaweedfs
    seaweedfs.stop()
    nbfile = tmp_path / "params.yaml"
    nbfile.write_text("api_url: http://127.0.0.1:9\npostgres_dsn: postgresql://nobody@127.0.0.1:9/x\n"
                      "redis_url: redis://127.0.0.1:9\nincident_id: INC-SPOOL\n")
    out = smartops("run", "api-down", "-f", str(nbfile), "--no-progress", env=cli_env(team), timeout=300)
    assert out.returncode == 1, out.stdout + out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("smartops run:")]
    assert len(errors) == 1 and seaweedfs.endpoint in errors[0] and "spool" in errors[0], out.stderr
    assert "Traceback" not in out.stderr
    seaweedfs.start()
    later = put(team, started="2030-01-01T00:00:00Z")
    rows = team.index.rows()
    assert [r["incident_id"] for r in rows] == ["INC-SPOOL", "INC-1"] and rows[1]["name"] == Path(str(later)).name
    assert team.verify().ok


# -- every archive command on the shared backend -----------------------------------------------------
def test_list_search_show_export_on_s3(team, tmp_path):
    a = Path(str(put(team, started="2026-11-26T10:00:00Z", causes=["idle-connection-leak"],
                     finding="idle in transaction for 14 min"))).name
    put(team, started="2026-11-27T10:00:00Z", runbook="disk-full", severity="P2")
    env = cli_env(team)
    out = smartops("archive", "list", "--json", "--cause", "idle-connection-leak", env=env)
    assert out.returncode == 0 and [r["name"] for r in json.loads(out.stdout)] == [a], out.stderr
    out = smartops("archive", "list", "--since", "2026-11-27T00:00:00Z", env=env)
    assert out.returncode == 0 and "disk-full" in out.stdout and a not in out.stdout
    out = smartops("archive", "search", "idle", "transaction", env=env)
    assert out.returncode == 0 and a in out.stdout and "[idle]" in out.stdout, out.stdout
    out = smartops("archive", "show", a[:24], env=env)
    assert out.returncode == 0 and "matches the index" in out.stdout and f"{team.url}/{a}" in out.stdout, out.stdout
    html = tmp_path / "a.html"
    out = smartops("archive", "export", a, "--html", "-o", str(html), env=env)
    assert out.returncode == 0 and "step ran" in html.read_text() and "<img" in html.read_text()
    out = smartops("archive", "reindex", env=env)
    assert out.returncode == 0 and "reindexed 2 records" in out.stdout, out.stdout + out.stderr
    assert team.verify().ok


# -- migrate -------------------------------------------------------------------------------------------
def test_migrate_a_folder_archive_same_bytes_same_hashes(team, tmp_path):
    folder = tmp_path / "incidents"
    local = open_archive(folder)
    for i in range(5):
        nb, summary = synthetic(started=f"2026-11-2{i}T10:00:00Z", incident_id=f"INC-{i}")
        local.write(nb, summary)
    people = seed_people(local)  # a plan one person approved, a token, the checklist and its lessons
    old = {r["name"]: (r["sha256"], r["entry_hash"]) for r in local.index.rows()}
    old_tip = local.verify().tip
    out = smartops("archive", "migrate", "--archive", str(folder), "--to", team.url, "--to-index", team.index.dsn)
    assert out.returncode == 0 and "intact" in out.stdout, out.stdout + out.stderr
    new = {r["name"]: (r["sha256"], r["entry_hash"]) for r in team.index.rows()}
    assert new == old
    assert team.index.meta()["migrated_tip"] == old_tip and team.index.meta()["migrated_from"] == str(folder)
    assert team.plan_store().get("pl-migrated").state == "pending"  # still approvable, now from any machine
    assert people_of(team) == people  # and it still shows who approved, who holds a token, what was done
    for name in old:
        assert team.storage.read(name) == (folder / name).read_bytes()
    after = put(team, started="2026-12-01T10:00:00Z")  # the chain goes on from the old tip
    assert team.index.entry(Path(str(after)).name) and team.index.rows()[-1]["prev_hash"] == old_tip
    assert team.verify().ok
    again = smartops("archive", "migrate", "--archive", str(folder), "--to", team.url, "--to-index", team.index.dsn)
    assert again.returncode == 2 and "not empty" in again.stderr


# -- retention ------------------------------------------------------------------------------------------
def test_prune_keeps_tombstones_and_open_incidents(team):
    old_resolved = [put(team, started="2024-01-01T10:00:00Z", incident_id="INC-OLD", causes=["disk-full"]),
                    put(team, started="2024-01-01T11:00:00Z", incident_id="INC-OLD")]  # completed, nothing: resolved
    old_open = put(team, started="2024-01-02T10:00:00Z", incident_id="INC-OPEN", causes=["idle-connection-leak"])
    recent = put(team, started="2030-01-01T10:00:00Z", incident_id="INC-NEW")
    names = lambda paths: {Path(str(p)).name for p in paths}  # noqa: E731
    env = cli_env(team)
    dry = smartops("archive", "prune", "--older-than", "400d", "--dry-run", env=env)
    assert dry.returncode == 0 and set(team.storage.names()) == names([*old_resolved, old_open, recent])
    assert all(n in dry.stdout for n in names(old_resolved)) and "would prune 2" in dry.stderr
    out = smartops("archive", "prune", "--older-than", "400d", env=env)
    assert out.returncode == 0, out.stderr
    assert set(team.storage.names()) == names([old_open, recent])
    assert f"kept (incident still open): {Path(str(old_open)).name}" in out.stdout
    report = team.verify()
    assert report.ok and set(report.pruned) == names(old_resolved) and report.entries == 4
    out = smartops("archive", "verify", env=env)
    assert out.returncode == 0 and out.stdout.count("PRUNED") == 2 and "2 pruned" in out.stdout


# -- bad input -----------------------------------------------------------------------------------------
def test_an_unreachable_store_or_index_is_one_line_exit_1(archive_dsn, archive_postgres, tmp_path):
    from tests.conftest import free_port

    closed = free_port()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{closed}", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y",
           "SMARTOPS_STATE_DIR": str(tmp_path / "state")}
    out = smartops("archive", "list", "--archive", "s3://incidents/team", "--index", archive_dsn, env=env, timeout=90)
    assert out.returncode == 1 and f"127.0.0.1:{closed}" in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    out = smartops("archive", "list", "--archive", "s3://incidents/team", "--index",
                   f"postgresql://postgres@127.0.0.1:{closed}/x", env=env, timeout=90)
    assert out.returncode == 1 and "unreachable" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    wrong_db = archive_postgres.dsn(db="no_such_database")
    out = smartops("archive", "list", "--archive", "s3://incidents/team", "--index", wrong_db, env=env)
    assert out.returncode == 2 and "no_such_database" in out.stderr and len(out.stderr.strip().splitlines()) == 1


# -- the reports on the shared backend ----------------------------------------------------------------
def test_postmortem_and_review_read_an_s3_archive(team, tmp_path):
    first = Path(str(put(team, started="2026-11-26T10:00:00Z", incident_id="INC-R", causes=["idle-connection-leak"])))
    put(team, started="2026-11-26T10:30:00Z", incident_id="INC-R")
    env = cli_env(team)
    out = smartops("postmortem", "--incident", "INC-R", "-o", str(tmp_path / "pm.md"), env=env)
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "pm.md").read_text()
    assert "INC-R" in text and first.name in text
    out = smartops("postmortem", first.name[:24], "-o", str(tmp_path / "one.md"), env=env)
    assert out.returncode == 0 and (tmp_path / "one.md").is_file(), out.stderr
    from smartops_nb.reports import review

    rows = review.load_rows(team.url, team.index.dsn)
    assert list(rows["incident_id"]) == ["INC-R", "INC-R"]
