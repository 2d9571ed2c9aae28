"""Which archive `--archive` / `--index` name (its storage chosen by the URL's scheme), and the bad pairs
refused before anything runs."""
from __future__ import annotations

import pytest

from smartops_nb.contract import ParameterError
from smartops_nb.records.index_postgres import PostgresIndex, redacted
from smartops_nb.records.index_sqlite import SqliteIndex
from smartops_nb.records.storage import FolderStorage, S3Storage
from smartops_nb.records.archive import open_archive


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for name in ("SMARTOPS_ARCHIVE", "SMARTOPS_INDEX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SMARTOPS_STATE_DIR", str(tmp_path / "state"))


def test_a_folder_is_local_with_its_sqlite_index(tmp_path):
    loc = open_archive(tmp_path / "incidents")
    assert isinstance(loc.storage, FolderStorage) and isinstance(loc.index, SqliteIndex)
    assert not loc.shared and loc.folder == loc.log_dir == tmp_path / "incidents"


def test_s3_with_a_dsn_is_shared_and_its_spool_is_per_archive(monkeypatch):
    dsn = "postgresql://ops:s3cret@db.example:5432/archive"
    loc = open_archive("s3://incidents/team/", dsn)
    assert isinstance(loc.storage, S3Storage) and isinstance(loc.index, PostgresIndex)
    assert loc.shared and loc.folder is None and loc.log_dir == loc.local_dir and loc.url == "s3://incidents/team"
    assert (loc.storage.bucket, loc.storage.prefix) == ("incidents", "team")
    other = open_archive("s3://incidents/other", dsn)
    assert loc.local_dir != other.local_dir
    assert "s3cret" not in loc.index.label and "db.example" in loc.index.label


def test_the_environment_names_the_archive_and_index(monkeypatch):
    monkeypatch.setenv("SMARTOPS_ARCHIVE", "s3://b/p")
    monkeypatch.setenv("SMARTOPS_INDEX", "host=127.0.0.1 dbname=a")
    loc = open_archive()
    assert loc.url == "s3://b/p" and isinstance(loc.index, PostgresIndex)


@pytest.mark.parametrize("archive, index, says", [
    ("s3://bucket/prefix", None, "needs --index"),
    ("s3://bucket/prefix", "sqlite", "needs --index"),
    ("s3://", "postgresql://u@h/db", "names no bucket"),
    ("https://example.com/x", None, "a folder or s3://"),
    ("s3://bucket/prefix", "not a dsn", "neither 'sqlite' nor a PostgreSQL DSN"),
    ("s3://bucket/prefix", "postgresql://u@h/db?bogus=1", "not a valid PostgreSQL DSN"),
    ("s3://bucket/prefix", "host=h port", "not a valid PostgreSQL DSN"),
])
def test_a_pair_that_cannot_work_is_bad_input(archive, index, says):
    with pytest.raises(ParameterError) as e:
        open_archive(archive, index)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_redacted_dsn_has_no_password():
    assert redacted("postgresql://ops:pw@h:6543/db") == "postgresql://ops@h:6543/db"
    assert "pw" not in redacted("host=h user=ops password=pw dbname=db")


@pytest.mark.parametrize("argv", [
    ["archive", "list", "--archive", "s3://bucket/prefix"],
    ["archive", "verify", "--archive", "s3://bucket/prefix", "--index", "nonsense"],
    ["archive", "migrate", "--to", "s3://bucket/prefix"],
    ["run", "api-down", "--archive", "s3://bucket/prefix"],
])
def test_cli_refuses_s3_without_a_dsn_in_one_line_exit_2(argv, capsys, tmp_path, monkeypatch):
    from smartops_nb.cli.main import main

    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and ("--index" in err or "DSN" in err), err
    assert not (tmp_path / "incidents").exists()


def test_a_folder_named_without_an_index_is_the_folder_with_sqlite(monkeypatch, tmp_path):
    """$SMARTOPS_INDEX goes with the environment's archive: `--archive incidents` alone means the folder."""
    monkeypatch.setenv("SMARTOPS_ARCHIVE", "s3://team/records")
    monkeypatch.setenv("SMARTOPS_INDEX", "postgresql://ops@db/archive")
    assert isinstance(open_archive(tmp_path / "incidents").index, SqliteIndex)
    assert isinstance(open_archive("s3://other/x").index, PostgresIndex)
    assert isinstance(open_archive(tmp_path, "postgresql://ops@db/a").index, PostgresIndex)


def test_a_storage_registered_for_a_scheme_opens_its_urls(monkeypatch, tmp_path):
    """The registry papermill-style: a scheme names its storage; an unknown one is bad input."""
    from smartops_nb.records import storage

    monkeypatch.setitem(storage.STORAGES, "mem", lambda url: storage.FolderStorage(tmp_path / url[len("mem://"):]))
    loc = open_archive("mem://team", "postgresql://ops@db/archive")
    assert loc.storage.folder == tmp_path / "team" and loc.shared
    with pytest.raises(ParameterError, match="a folder or s3://"):
        open_archive("ftp://host/x")
