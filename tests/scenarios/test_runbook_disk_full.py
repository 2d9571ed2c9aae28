"""disk-full on a real, small filesystem: a 20 MiB tmpfs mounted for each test.

Filled past 90% with logs and backups aged by ``os.utime`` plus fresh files; a file outside the
log folder is reachable through a symlink planted inside it. No container engine is given (the
``docker_host`` socket does not exist), so the engine step is an ``error`` finding and the run goes on.
One scenario gives a real engine whose storage lives on the full tmpfs: its leftovers are
``docker-reclaimable`` and an approved ``prune-docker`` frees the disk while keeping volumes.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from smartops_nb.checks import disk_full as checks
from smartops_nb.findings import Finding
from smartops_sandbox.podman import BASE_IMAGE, PodmanService, build_base_image
from tests.conftest import require, run_runbook

MIB = 2 ** 20
OLD = 60 * 86400  # seconds: twice the 30-day limit


@contextlib.contextmanager
def _mounted_tmpfs(mnt: Path, size: str):
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    require("tmpfs mount", proc.returncode == 0,
            f"mount -t tmpfs needs root/CAP_SYS_ADMIN: {proc.stderr.strip() or proc.returncode}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def tmpfs(tmp_path):
    with _mounted_tmpfs(tmp_path / "disk", "20m") as mnt:
        yield mnt


@pytest.fixture
def engine_on_tmpfs(tmp_path, podman_engine):
    """(mount, docker URL, client): a 48 MiB tmpfs holding a podman engine's own storage, so that
    what the engine keeps fills that disk (``podman_engine`` only stands for "podman is installed")."""
    import docker

    with _mounted_tmpfs(tmp_path / "disk", "48m") as mnt:
        service = PodmanService(mnt / "engine")
        url = service.start(timeout=30)
        client = docker.DockerClient(base_url=url, timeout=30)
        try:
            yield mnt, url, client
        finally:
            client.close()
            service.stop()


def _write(path: Path, mib: float, age_s: float = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * int(mib * MIB))
    if age_s:
        t = time.time() - age_s
        os.utime(path, (t, t), follow_symlinks=False)
    return path


def _used_pct(path: Path) -> float:
    u = shutil.disk_usage(path)
    return 100.0 * u.used / u.total


def _params(mnt: Path, tmp_path: Path, **extra) -> dict:
    return {"environment": "test", "disk_paths": [str(mnt)], "log_dirs": [str(mnt / "log")],
            "backup_dirs": [str(mnt / "backups")], "docker_host": f"unix://{tmp_path}/no-engine.sock", **extra}


def _fill(mnt: Path) -> dict[str, list[Path]]:
    """~19 MiB of 20: 3 old logs, 3 old backups, fresh ones, and a trap reached through symlinks."""
    old = [_write(mnt / "log" / f"app-{i}.log", 2.5, OLD) for i in range(3)]
    old += [_write(mnt / "backups" / f"db-{i}.sql.gz", 2.5, OLD) for i in range(3)]
    fresh = [_write(mnt / "log" / "app.log", 1.0), _write(mnt / "log" / "nginx" / "access.log", 0.5),
             _write(mnt / "backups" / "db-today.sql.gz", 1.5), _write(mnt / "backups" / "notes.log", 0.2, OLD)]
    outside = [_write(mnt / "outside" / "precious.log", 0.2, OLD),
               _write(mnt / "outside" / "sub" / "deep.log", 0.2, OLD)]
    link = mnt / "log" / "precious.log"          # a file link leading out of the log folder
    link.symlink_to(mnt / "outside" / "precious.log")
    t = time.time() - OLD
    os.utime(link, (t, t), follow_symlinks=False)
    (mnt / "log" / "linked-dir").symlink_to(mnt / "outside" / "sub")  # a folder link leading out
    return {"old": old, "fresh": fresh, "outside": outside, "links": [link]}


def test_full_disk_with_old_logs_and_backups(tmpfs, tmp_path, archive):
    files = _fill(tmpfs)
    assert _used_pct(tmpfs) > 90
    before = sorted(p for p in tmpfs.rglob("*"))

    rec = run_runbook("disk-full", archive, _params(tmpfs, tmp_path))

    assert {"disk-nearly-full", "old-logs", "old-backups"} <= set(rec.causes)
    assert rec.finding("docker-disk-usage")["status"] == "error"
    assert rec.finding("old-logs")["data"]["count"] == 3
    assert rec.finding("old-backups")["data"]["count"] == 3
    assert {a["action"] for a in rec.actions("recommended")} == {"delete-old-logs", "delete-old-backups"}
    # investigate mode deletes nothing
    assert sorted(p for p in tmpfs.rglob("*")) == before
    assert all(p.exists() for p in files["old"])


def test_healthy_disk_confirms_nothing(tmpfs, tmp_path, archive):
    _write(tmpfs / "log" / "app.log", 1.0)
    _write(tmpfs / "backups" / "db-today.sql.gz", 1.0)

    rec = run_runbook("disk-full", archive, _params(tmpfs, tmp_path, mode="mitigate",
                                                    approved_actions=["delete-old-logs", "delete-old-backups"]))

    assert rec.summary["diagnosis"]["confirmed"] is False and rec.causes == []
    assert rec.actions() == []
    assert rec.finding("disk-usage")["status"] == "ok"


def test_approved_deletions_free_space_and_spare_everything_else(tmpfs, tmp_path, archive):
    files = _fill(tmpfs)

    rec = run_runbook("disk-full", archive, _params(tmpfs, tmp_path, mode="mitigate",
                                                    approved_actions=["delete-old-logs", "delete-old-backups"]))

    executed = {a["action"]: a["result"] for a in rec.actions("executed")}
    assert set(executed) == {"delete-old-logs", "delete-old-backups"}
    assert _used_pct(tmpfs) < 90
    assert not any(p.exists() for p in files["old"])
    assert all(p.exists() for p in files["fresh"] + files["outside"])
    assert all(p.is_symlink() for p in files["links"])
    refused = {r["path"]: r["reason"] for r in executed["delete-old-logs"]["refused"]}
    assert "symlink" in refused[str(files["links"][0])]


def test_delete_action_rechecks_every_listed_path(tmpfs):
    """The action refuses what the listing cannot vouch for: a path outside the folders, a file
    made fresh since it was listed; and only the files listed are ever touched."""
    from smartops_nb.actions import carry_out
    from smartops_nb.mitigations import files as file_actions
    from smartops_nb.probes import disk

    old = [_write(tmpfs / "log" / f"a-{i}.log", 0.1, OLD) for i in range(2)]
    outside = _write(tmpfs / "elsewhere" / "x.log", 0.1, OLD)
    listing = disk.old_files([str(tmpfs / "log")], "*.log", 30)
    late = _write(tmpfs / "log" / "late.log", 0.1, OLD)  # appeared after the listing
    listing.loc[len(listing)] = [str(outside), str(tmpfs / "log"), 1, 99.0, False]
    old[1].touch()  # written to since it was listed: no longer old

    mode, result = carry_out(file_actions.delete_old_files("delete-old-logs", listing, [str(tmpfs / "log")],
                                                           "*.log", 30), "executed")

    assert mode == "executed" and result["deleted"] == [str(old[0])]
    reasons = {r["path"]: r["reason"] for r in result["refused"]}
    assert "outside" in reasons[str(outside)] and "no longer older" in reasons[str(old[1])]
    assert outside.exists() and old[1].exists() and late.exists()


def test_delete_goes_on_after_a_failed_unlink(tmpfs, monkeypatch):
    """One OSError (permission, vanished) refuses that file on the record; the others are still deleted."""
    from smartops_nb.actions import carry_out
    from smartops_nb.mitigations import files as file_actions
    from smartops_nb.probes import disk

    old = [_write(tmpfs / "log" / f"b-{i}.log", 0.1, OLD) for i in range(3)]
    listing = disk.old_files([str(tmpfs / "log")], "*.log", 30)
    real_unlink = os.unlink

    def unlink(path, *a, **kw):
        if str(path) == str(old[1]):
            raise PermissionError(13, "Permission denied", str(path))
        return real_unlink(path, *a, **kw)

    monkeypatch.setattr(os, "unlink", unlink)
    mode, result = carry_out(file_actions.delete_old_files("delete-old-logs", listing, [str(tmpfs / "log")],
                                                           "*.log", 30), "executed")

    assert mode == "executed" and sorted(result["deleted"]) == sorted([str(old[0]), str(old[2])])
    assert result["refused"] == [{"path": str(old[1]), "reason": "PermissionError: Permission denied"}]
    assert old[1].exists() and not old[0].exists()


def test_no_listing_is_recommended_and_executes_nothing(tmpfs):
    from smartops_nb.actions import carry_out, decide
    from smartops_nb.mitigations import files as file_actions

    keep = _write(tmpfs / "log" / "c.log", 0.1, OLD)
    action = file_actions.delete_old_files("delete-old-logs", None, [str(tmpfs / "log")], "*.log", 30)
    decision, reason = decide(action, mode="mitigate", approved=["delete-old-logs"])
    assert decision == "recommended" and "no listing" in reason
    assert carry_out(action, decision)[0] == "recommended" and keep.exists()


def test_unreadable_roots_warn_never_ok(tmp_path):
    from smartops_nb.checks import disk_full as checks
    from smartops_nb.probes import disk

    missing = str(tmp_path / "nowhere")
    listing = disk.old_files([missing], "*.log", 30)
    old = checks.check_old_files(listing, "logs", "*.log", 30)
    assert old.status == "warn" and missing in old.summary and not old.data["found"]
    largest = checks.check_largest(*disk.largest_many([missing]))
    assert largest.status == "warn" and missing in largest.summary


def test_not_confirmed_says_only_what_was_measured():
    from smartops_nb.checks import disk_full as checks
    from smartops_nb.findings import Finding

    err = Finding("error", "Filesystem usage of disk_paths: could not complete (OSError: boom)", check="disk-usage")
    diag = checks.diagnose([err], None)
    assert not diag.causes and "below" not in diag.summary


def _engine_leftovers(client) -> dict:
    """What a busy engine leaves behind: an old release's image (a 4 MiB layer) nobody runs, exited
    containers with data in their writable layers, and a volume holding data (kept unless approved)."""
    build_base_image(client, BASE_IMAGE)
    build = client.containers.run(BASE_IMAGE, ["sh", "-c", "dd if=/dev/zero of=/blob bs=1M count=4"], detach=True)
    build.wait(timeout=30)
    build.commit(repository="smartamazon-api", tag="1.3.0")
    job = client.containers.run("smartamazon-api:1.3.0", ["sh", "-c", "dd if=/dev/zero of=/scratch bs=1M count=3"],
                                detach=True)
    job.wait(timeout=30)
    volume = client.volumes.create("smartamazon-pgdata")
    writer = client.containers.run(BASE_IMAGE, ["sh", "-c", "dd if=/dev/zero of=/data/base bs=1M count=1"],
                                   volumes={volume.name: {"bind": "/data", "mode": "rw"}}, detach=True)
    writer.wait(timeout=30)
    return {"image": "smartamazon-api:1.3.0", "containers": [build.id, job.id, writer.id], "volume": volume.name}


def _fill_to(mnt: Path, pct: float, name: str = "orders.db") -> None:
    """A fresh file (nothing old, nothing the engine owns) making ``pct`` % of the disk used."""
    u = shutil.disk_usage(mnt)
    want = int(pct / 100 * (u.used + u.free)) - u.used
    _write(mnt / "data" / name, max(want, 0) / MIB)


def test_engine_leftovers_on_the_full_disk_are_docker_reclaimable_and_prune_frees_it(engine_on_tmpfs, archive):
    mnt, url, client = engine_on_tmpfs
    left = _engine_leftovers(client)
    _fill_to(mnt, 94)
    (mnt / "log").mkdir()
    (mnt / "backups").mkdir()
    params = {"environment": "test", "platform": "docker", "docker_host": url, "disk_paths": [str(mnt)],
              "log_dirs": [str(mnt / "log")], "backup_dirs": [str(mnt / "backups")]}
    before_pct = _used_pct(mnt)
    assert before_pct >= 90

    rec = run_runbook("disk-full", archive, params)
    assert rec.causes == ["disk-nearly-full", "docker-reclaimable"], rec.summary["diagnosis"]
    engine = rec.finding("docker-disk-usage")["data"]
    assert engine["on_disk_paths"] == [str(mnt)] and engine["prunable_without_volumes_bytes"] > 4 * MIB
    assert [(a["action"], a["mode"]) for a in rec.actions()] == [("prune-docker", "recommended")]
    assert client.images.get(left["image"]) and len(client.containers.list(all=True)) == 3  # nothing pruned

    rec = run_runbook("disk-full", archive, {**params, "mode": "mitigate", "approved_actions": ["prune-docker"]})
    (prune,) = rec.actions("executed")
    assert prune["action"] == "prune-docker" and prune["result"]["reclaimed_bytes"] > 4 * MIB, prune["result"]
    assert prune["result"]["volumes"] is False
    assert client.containers.list(all=True) == [] and not client.images.list(name="smartamazon-api")
    assert client.volumes.get(left["volume"])  # volumes hold data: kept unless prune-docker-volumes is approved
    assert _used_pct(mnt) < 90 <= before_pct

    _fill_to(mnt, 94, "orders-2.db")  # full again; now only the unused volume is left to reclaim
    rec = run_runbook("disk-full", archive, {**params, "mode": "mitigate",
                                             "approved_actions": ["prune-docker", "prune-docker-volumes"]})
    (prune,) = rec.actions("executed")
    assert prune["result"]["volumes"] is True and prune["result"]["reclaimed"]["volumes"] > 0, prune["result"]
    assert left["volume"] not in [v.name for v in client.volumes.list()]


def _engine_finding(df: dict, on_paths: list[str] | None) -> Finding:
    f = checks.check_docker(df, on_paths)
    f.check = "docker-disk-usage"  # the step's name, set by run.finding in a notebook
    return f


def test_reclaimable_engine_space_on_another_disk_is_not_a_cause():
    usage = Finding("critical", "/data 95% used", {"full": ["/data"]}, "disk-usage")
    df = {"images": {"count": 3, "size_bytes": 9 * MIB, "reclaimable_bytes": 6 * MIB},
          "volumes": {"count": 1, "size_bytes": MIB, "reclaimable_bytes": MIB},
          "total_bytes": 10 * MIB, "reclaimable_bytes": 7 * MIB, "root_dir": "/var/lib/docker"}
    elsewhere = _engine_finding(df, [])               # the engine's storage shares no checked disk
    assert "on none of the checked paths" in elsewhere.summary and "prune-docker-volumes" in elsewhere.summary
    assert checks.diagnose([usage, elsewhere], None).causes == ["disk-nearly-full"]
    here = _engine_finding(df, ["/data"])
    assert checks.diagnose([usage, here], None).causes == ["disk-nearly-full", "docker-reclaimable"]
    remote = _engine_finding({**df, "root_dir": None}, None)  # cannot tell: counted, and said so
    assert "cannot be seen from here" in remote.summary
    assert checks.diagnose([usage, remote], None).causes == ["disk-nearly-full", "docker-reclaimable"]


def test_a_remote_engines_storage_is_not_looked_for_on_this_host():
    from smartops_nb.platforms.docker import DockerPlatform

    assert DockerPlatform(base_url="tcp://10.0.0.7:2376")._root_dir() is None  # no call is made either
