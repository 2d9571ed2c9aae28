"""The archive: records and index written together, a hash chain that names every change made
outside the tool, list/search/show/export, reindex, concurrent writers, and a full disk."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest
import yaml

from smartops_nb.records import record
from smartops_nb.records.archive import open_archive
from smartops_nb.records.storage import file_sha256, record_files
from tests.conftest import REPO, require, run_runbook
from tests.fixtures.archives import archive_list, names, smartops, synthetic, write

PLANTED = "PlantedPw-7f3e9c"


# -- real runs against the sandbox -----------------------------------------------------------------
@pytest.fixture(scope="module")
def real_archive(sandbox, tmp_path_factory) -> Path:
    """Two real db-pool-exhausted runs on a healthy sandbox; the DSN carries a planted password."""
    folder = tmp_path_factory.mktemp("real") / "incidents"
    sandbox.heal()
    params = {**sandbox.params(), "api_log_path": str(sandbox.api_log), "incident_id": "INC-REAL"}
    params["postgres_dsn"] = params["postgres_dsn"].replace("smartops@", f"smartops:{PLANTED}@")  # trust auth
    for _ in range(2):
        run_runbook("db-pool-exhausted", folder, params)
    return folder


# -- a full disk -----------------------------------------------------------------------------------
@pytest.fixture
def tiny_tmpfs(tmp_path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    # 1 MiB: room for the index (a WAL-mode SQLite file with its FTS tables is ~100 KiB), then filled up
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    require("a mountable tmpfs (root)", res.returncode == 0, f"mount -t tmpfs failed: {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(folder: Path) -> None:
    try:
        with open(folder / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError:  # ENOSPC: full
        pass


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.name: file_sha256(p) for p in folder.iterdir() if p.is_file()}


def test_real_runs_are_indexed_and_verify(real_archive):
    rows = archive_list(real_archive)
    assert len(rows) == 2 and {r["runbook"] for r in rows} == {"db-pool-exhausted"}
    assert rows[0]["started_at"] >= rows[1]["started_at"] and rows[0]["incident_id"] == "INC-REAL"
    assert open_archive(real_archive).verify().ok


def test_search_finds_a_real_record_by_a_word_in_a_finding(real_archive, cli):
    nb = nbformat.read(next(iter(record_files(real_archive))), as_version=4)
    word = next(w for f in nb.metadata["smartops"]["findings"] for w in f["summary"].split()
                if w.isalpha() and len(w) > 5)
    out = cli("archive", "search", word, "--archive", str(real_archive), "--json")
    assert out.returncode == 0 and len(json.loads(out.stdout)) >= 1, (word, out.stderr)


def test_show_prints_diagnosis_findings_actions_timeline(real_archive, cli):
    path = record_files(real_archive)[0]
    out = cli("archive", "show", path.name, "--archive", str(real_archive))
    assert out.returncode == 0, out.stderr
    for heading in ("Diagnosis:", "Findings:", "Actions:", "Timeline:", "matches the index", "run started"):
        assert heading in out.stdout, heading
    assert PLANTED not in out.stdout


def test_export_html_embeds_the_plots_and_no_secret(real_archive, tmp_path, cli):
    path = record_files(real_archive)[0]
    assert PLANTED not in path.read_text()
    # a secret that slipped into an output (a URL with credentials in a log line) is scrubbed on export
    leaky = tmp_path / path.name
    nb = nbformat.read(path, as_version=4)
    nb.cells[-1].setdefault("outputs", []).append(
        nbformat.v4.new_output("stream", name="stdout", text=f"retrying redis://:{PLANTED}-2@10.0.0.5:6379/0\n"))
    nbformat.write(nb, leaky)
    for source, out in ((path.name, tmp_path / "a.html"), (str(leaky), tmp_path / "b.html")):
        res = cli("archive", "export", source, "--html", "-o", str(out), "--archive", str(real_archive))
        assert res.returncode == 0 and res.stdout.strip() == str(out), res.stderr
        html = out.read_text()
        assert '<img' in html and "data:image/png;base64," in html
        assert 'src="http' not in html  # standalone: nothing fetched from the network
        assert PLANTED not in html


def test_a_full_disk_fails_loudly_keeps_the_notebook_and_leaves_the_archive_untouched(tiny_tmpfs, tmp_path,
                                                                                       sandbox_params):
    incidents = tiny_tmpfs / "incidents"
    first = write(incidents)  # an archive with an index and one entry
    _fill(tiny_tmpfs)
    before = _snapshot(incidents)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(sandbox_params))
    fallback = tmp_path / "unsaved"
    out = smartops("run", "db-pool-exhausted", "-f", str(params), "--archive", str(incidents), "--no-progress",
                   env={"SMARTOPS_FALLBACK_DIR": str(fallback)}, timeout=300)
    assert out.returncode == 1, out.stdout + out.stderr
    message = [l for l in out.stderr.splitlines() if l.startswith("smartops run:")]
    assert len(message) == 1 and "No space left on device" in message[0], out.stderr
    kept = list(fallback.glob("*.ipynb"))
    assert len(kept) == 1 and str(kept[0]) in message[0]
    assert nbformat.read(kept[0], as_version=4).metadata["smartops"]["runbook"] == "db-pool-exhausted"
    assert _snapshot(incidents) == before  # no partial file, no temp file, the index byte for byte as it was
    assert names(archive_list(incidents)) == [first.name]


def test_a_read_only_archive_fails_loudly_and_keeps_the_notebook(tiny_tmpfs, tmp_path, monkeypatch):
    incidents = tiny_tmpfs / "incidents"
    write(incidents)
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_tmpfs)], check=True)
    monkeypatch.setenv(record.FALLBACK_ENV, str(tmp_path / "unsaved"))
    nb, summary = synthetic(started="2026-12-01T00:00:00Z")
    with pytest.raises(record.RecordWriteError) as e:
        open_archive(incidents).write(nb, summary)
    assert "Read-only file system" in str(e.value) and str(e.value.fallback) in str(e.value)
    assert e.value.fallback.exists() and len(archive_list(incidents)) == 1


def test_concurrent_processes_never_share_a_name_and_keep_a_valid_chain(archive):
    script = textwrap.dedent("""
        import sys
        from tests.fixtures.archives import write
        from pathlib import Path
        for _ in range(5):
            print(write(Path(sys.argv[1])).name)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(archive)], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    written = [n for o, _ in outs for n in o.split()]
    assert len(written) == len(set(written)) == 20
    report = open_archive(archive).verify()
    assert report.ok and report.entries == 20, report.problems
