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

from smartops_nb.records import archive as archive_mod
from smartops_nb.records.location import open_archive
from tests.conftest import REPO
from tests.test_archive import synthetic

pytestmark = pytest.mark.scenario


def smartops(*args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smartops_nb.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, cwd=REPO)


@pytest.fixture
def team(seaweedfs, archive_dsn, tmp_path, monkeypatch):
    """An empty s3:// + PostgreSQL archive; this process's state (spool) in a temp folder."""
    monkeypatch.setenv("SMARTOPS_STATE_DIR", str(tmp_path / "state"))
    url = f"s3://incidents/team-{tmp_path.name[-8:]}"
    return open_archive(url, archive_dsn)


def put(loc, **kw):
    nb, summary = synthetic(**kw)
    return archive_mod.write_record(nb, summary, loc)


def test_records_index_and_verify_on_s3_and_postgresql(team):
    a = put(team, started="2026-11-26T10:00:00Z", causes=["idle-connection-leak"], finding="idle in transaction")
    b = put(team, started="2026-11-26T11:00:00Z", runbook="disk-full", finding="disk at 97% (2.1 GiB free)",
            severity="P2")
    c = put(team, started="2026-11-26T11:00:00Z", runbook="disk-full", severity="P2")  # same second: _2
    assert str(a).startswith(team.url + "/") and str(c).endswith("_2.ipynb")
    rows = archive_mod.list_records(team, limit=0)
    assert [r["name"] for r in rows] == [Path(c).name, Path(b).name, Path(a).name]
    assert [r["name"] for r in archive_mod.list_records(team, limit=0, runbook="disk-full", severity="P2")] \
        == [Path(c).name, Path(b).name]
    assert [r["name"] for r in archive_mod.list_records(team, limit=0, cause="idle-connection-leak")] == [Path(a).name]
    assert [r["name"] for r in archive_mod.search(team, "idle-connection-leak")] == [Path(a).name]
    assert [r["name"] for r in archive_mod.search(team, "GiB")] == [Path(b).name]
    report = archive_mod.verify(team)
    assert report.ok and report.entries == 3 and report.files == 3, report.problems
