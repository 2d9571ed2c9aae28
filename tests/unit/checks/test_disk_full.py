"""checks/disk_full.diagnose as a table: usage, old files and the engine's disk use in, causes out.

Each cause, and the traps: old logs, backups or reclaimable engine space while no disk is full
(nothing to diagnose), a disk approaching the threshold (warn), the engine's storage on another
filesystem than the full one (pruning frees nothing there), symlinks that are not counted."""
from __future__ import annotations

import pandas as pd
import pytest

from smartops_nb.checks import disk_full as df_
from tests.unit.checks import assert_diagnosis, at, failed

MIB = 1024 * 1024


def usage(*paths: tuple[str, float]) -> pd.DataFrame:
    return pd.DataFrame([{"path": p, "used_pct": pct, "total_bytes": 1000 * MIB,
                          "avail_bytes": int((100 - pct) * 10 * MIB)} for p, pct in paths])


def listing(n: int = 0, links: int = 0, errors: list[str] | None = None) -> pd.DataFrame:
    rows = ([{"path": f"/var/log/app/{i}.log", "size_bytes": 50 * MIB, "is_symlink": False} for i in range(n)]
            + [{"path": f"/var/log/app/link{i}.log", "size_bytes": 0, "is_symlink": True} for i in range(links)])
    out = pd.DataFrame(rows, columns=["path", "size_bytes", "is_symlink"])
    out.attrs["root_errors"] = errors or []
    return out


def engine(reclaimable_mib: float = 0, volumes_mib: float = 0) -> dict:
    return {"total_bytes": 900 * MIB, "reclaimable_bytes": int((reclaimable_mib + volumes_mib) * MIB),
            "root_dir": "/var/lib/containers",
            "images": {"count": 4, "size_bytes": 800 * MIB, "reclaimable_bytes": int(reclaimable_mib * MIB)},
            "volumes": {"count": 1, "size_bytes": 100 * MIB, "reclaimable_bytes": int(volumes_mib * MIB)}}


FULL = ("/", 97.0)


def findings(paths: pd.DataFrame | None, logs: pd.DataFrame | None = None, backups: pd.DataFrame | None = None,
             docker: dict | None = None, on_paths: list[str] | None = ["/"], warn_pct: float = 90.0) -> list:
    out = [at(df_.Step.USAGE, df_.check_usage(paths, warn_pct)) if paths is not None else failed(df_.Step.USAGE)]
    if logs is not None:
        out.append(at(df_.Step.OLD_LOGS, df_.check_old_files(logs, "logs", "*.log", 7)))
    if backups is not None:
        out.append(at(df_.Step.OLD_BACKUPS, df_.check_old_files(backups, "backups", "*.tar.gz", 30)))
    if docker is not None:
        out.append(at(df_.Step.ENGINE_DISK, df_.check_docker(docker, on_paths)))
    return out


CASES = {
    "disk well under the threshold": (findings(usage(("/", 40.0))), [], "Disk full not confirmed"),
    # ---- each cause
    "disk full, nothing known to reclaim": (
        findings(usage(FULL), listing(), listing(), engine()), ["disk-nearly-full"], "Nothing known to reclaim"),
    "old logs fill it": (findings(usage(FULL), listing(3)), ["disk-nearly-full", "old-logs"], "delete-old-logs"),
    "old backups fill it": (findings(usage(FULL), listing(), listing(2)), ["disk-nearly-full", "old-backups"],
                            "delete-old-backups"),
    "engine space reclaimable on the full disk": (
        findings(usage(FULL), docker=engine(300)), ["disk-nearly-full", "docker-reclaimable"], "prune-docker"),
    "engine storage not visible from here counts": (
        findings(usage(FULL), docker=engine(300), on_paths=None), ["disk-nearly-full", "docker-reclaimable"],
        "cannot be seen from here"),
    "all three": (findings(usage(FULL), listing(3), listing(2), engine(300)),
                  ["disk-nearly-full", "old-logs", "old-backups", "docker-reclaimable"],
                  "delete-old-logs, delete-old-backups, prune-docker"),
    "one of two paths full": (findings(usage(("/", 50.0), ("/data", 95.0)), listing(1), on_paths=["/data"]),
                              ["disk-nearly-full", "old-logs"], "/data at or above 90%"),
    # ---- traps: a symptom without its cause
    "old logs but the disk is not full": (findings(usage(("/", 40.0)), listing(3), listing(2), engine(300)), [],
                                          "Disk full not confirmed"),
    "approaching the threshold": (findings(usage(("/", 80.0)), listing(3)), [], "approaching 90%"),
    "engine storage on another filesystem": (
        findings(usage(FULL), docker=engine(300), on_paths=[]), ["disk-nearly-full"], "Nothing known to reclaim"),
    "engine storage on the other, not the full, path": (
        findings(usage(("/", 97.0), ("/data", 10.0)), docker=engine(300), on_paths=["/data"]), ["disk-nearly-full"],
        "Nothing known to reclaim"),
    "only symlinks match the pattern": (findings(usage(FULL), listing(0, links=3)), ["disk-nearly-full"],
                                        "Nothing known to reclaim"),
    "usage not measured": (findings(None, listing(3)), [], "nothing was measured"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_diagnose(case):
    assert_diagnosis(df_.diagnose, CASES[case][0], None, *CASES[case][1:])


def test_an_unreadable_folder_warns_without_being_a_cause():
    f = df_.check_old_files(listing(0, errors=["/var/log/app: Permission denied"]), "logs", "*.log", 7)
    assert f.status == "warn" and not f.data["found"] and "the listing is incomplete" in f.summary
    assert df_.diagnose([at(df_.Step.USAGE, df_.check_usage(usage(FULL), 90)), at(df_.Step.OLD_LOGS, f)],
                        None).causes == ["disk-nearly-full"]


def test_volumes_are_counted_apart():
    f = df_.check_docker(engine(0, volumes_mib=200), ["/"])
    assert f.data["prunable_without_volumes_bytes"] == 0 and "prune-docker-volumes" in f.summary
