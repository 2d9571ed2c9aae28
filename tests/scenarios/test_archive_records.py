"""The archive: records and index written together, a hash chain that names every change made (against real services)"""
from __future__ import annotations

import json

import os

import shutil

import sqlite3

import subprocess

import sys

import textwrap

import threading

from pathlib import Path

import nbformat

import pytest

import yaml

from smartops_nb.records import archive as archive_mod  # `archive` is the conftest fixture (a folder)

from smartops_nb.records import record

from smartops_nb.params import iso, utcnow

from tests.conftest import REPO, require, run_runbook




PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")



PLANTED = "PlantedPw-7f3e9c"



def smartops(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smartops_nb.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, cwd=REPO)



@pytest.fixture
def cli(capsys):
    """``smartops ...`` in-process (the same code as the command; a subprocess costs seconds here)."""
    from smartops_nb.cli.main import main

    def run(*args: str) -> subprocess.CompletedProcess:
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as e:  # argparse: --help, usage errors
            code = e.code
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)
    return run



def synthetic(runbook="db-pool-exhausted", started="2026-11-26T14:03:12Z", *, severity="P1", environment="prod",
              causes=(), status="completed", finding="connections at 40% of max_connections", output="",
              incident_id="INC-1"):
    """A small record as the runner would write it: summary in metadata, outputs, a PNG plot."""
    summary = {
        "schema": 1, "runbook": runbook, "title": runbook.replace("-", " "), "severity": severity,
        "environment": environment, "incident_id": incident_id, "detected_at": started, "started_at": started,
        "finished_at": started, "status": status, "mode": "investigate", "operator": "alice",
        "diagnosis": {"confirmed": bool(causes), "causes": list(causes), "summary": f"causes: {list(causes)}"},
        "findings": [{"check": "pool", "status": "warn" if causes else "ok", "summary": finding, "data": {}}],
        "actions": [{"action": "terminate-idle", "target": "smartamazon", "mode": "executed", "at": started,
                     "operator": "alice", "reason": "approved", "description": "", "result": {}}] if causes else [],
        "timeline": [{"at": started, "event": "run started"}, {"at": started, "event": "run finished"}],
        "parameters": {"environment": environment, "idle_minutes": 5},
    }
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("show()")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=output or "step ran\n"),
                    nbformat.v4.new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"})]
    nb.cells.append(cell)
    nb.metadata["smartops"] = summary
    return nb, summary



def write(folder: Path, **kw) -> Path:
    nb, summary = synthetic(**kw)
    return archive_mod.write_record(nb, summary, folder)



def archive_list(folder: Path, **kw):
    return archive_mod.list_records(folder, limit=0, **kw)



def names(rows) -> list[str]:
    return [r["name"] for r in rows]



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
    return {p.name: archive_mod.file_sha256(p) for p in folder.iterdir() if p.is_file()}



def test_real_runs_are_indexed_and_verify(real_archive):
    rows = archive_list(real_archive)
    assert len(rows) == 2 and {r["runbook"] for r in rows} == {"db-pool-exhausted"}
    assert rows[0]["started_at"] >= rows[1]["started_at"] and rows[0]["incident_id"] == "INC-REAL"
    assert archive_mod.verify(real_archive).ok



def test_search_finds_a_real_record_by_a_word_in_a_finding(real_archive, cli):
    nb = nbformat.read(next(iter(archive_mod.record_files(real_archive))), as_version=4)
    word = next(w for f in nb.metadata["smartops"]["findings"] for w in f["summary"].split()
                if w.isalpha() and len(w) > 5)
    out = cli("archive", "search", word, "--archive", str(real_archive), "--json")
    assert out.returncode == 0 and len(json.loads(out.stdout)) >= 1, (word, out.stderr)



def test_show_prints_diagnosis_findings_actions_timeline(real_archive, cli):
    path = archive_mod.record_files(real_archive)[0]
    out = cli("archive", "show", path.name, "--archive", str(real_archive))
    assert out.returncode == 0, out.stderr
    for heading in ("Diagnosis:", "Findings:", "Actions:", "Timeline:", "matches the index", "run started"):
        assert heading in out.stdout, heading
    assert PLANTED not in out.stdout



def test_export_html_embeds_the_plots_and_no_secret(real_archive, tmp_path, cli):
    path = archive_mod.record_files(real_archive)[0]
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
        archive_mod.write_record(nb, summary, incidents)
    assert "Read-only file system" in str(e.value) and str(e.value.fallback) in str(e.value)
    assert e.value.fallback.exists() and len(archive_list(incidents)) == 1

