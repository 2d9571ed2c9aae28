"""Reclaiming disk space: deleting old logs or backups, and pruning the container engine.

A deletion only ever touches files the same run listed (the listing is handed to the action) and
re-checks each one right before unlinking it: still a regular file (not a symlink), really under
one of the configured folders once every symlink in its path is resolved, still named like the
pattern, still older than the limit. Anything else is refused and recorded with the reason.
"""
from __future__ import annotations

import fnmatch
import os
import stat
from typing import Any, Callable, Iterable

import pandas as pd

from smartops_nb.actions import Action
from smartops_nb.probes import disk


def _refusal(path: str, roots: list[str], pattern: str, max_age_days: float) -> str:
    """Why ``path`` must not be deleted now, or "" when it may."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "gone"
    if stat.S_ISLNK(st.st_mode):
        return "symlink (never followed or deleted)"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if disk.under(path, roots) is None:
        return f"outside the configured folders {roots}"
    if not fnmatch.fnmatch(os.path.basename(path), pattern):
        return f"name does not match {pattern!r}"
    age = disk.file_age_days(path)
    if age <= max_age_days:
        return f"no longer older than {max_age_days:g} days (age {age:.1f} d)"
    return ""


def delete_old_files(name: str, listing: pd.DataFrame | None, roots: Iterable[str], pattern: str,
                     max_age_days: float) -> Action:
    """Delete the files of ``listing`` (from :func:`smartops_nb.probes.disk.old_files`, the very listing
    the run's step produced), re-checked one by one. ``None`` (the listing step did not complete):
    recommended only, nothing is executed."""
    roots = [str(r) for r in roots]
    if listing is None:
        return Action(name=name, target=f"{pattern} older than {max_age_days:g} days under {', '.join(roots)}",
                      description="delete the listed old files", execute=lambda: {"deleted": []},
                      manual="no listing: the step that lists the old files did not complete in this run, so "
                             "there is nothing vetted to delete; re-run the runbook")
    paths = [str(p) for p in listing["path"]] if len(listing) else []

    def preview() -> dict:
        plan = [{"path": p, "refused": _refusal(p, roots, pattern, max_age_days)} for p in paths]
        ok = [x["path"] for x in plan if not x["refused"]]
        return {"would_delete": ok, "would_free_bytes": int(listing[listing["path"].isin(ok)]["size_bytes"].sum())
                if ok else 0, "would_refuse": [x for x in plan if x["refused"]]}

    def execute() -> dict:
        deleted, refused, freed = [], [], 0
        for p in paths:
            reason = _refusal(p, roots, pattern, max_age_days)
            if reason:
                refused.append({"path": p, "reason": reason})
                continue
            try:
                size = os.lstat(p).st_size
                os.unlink(p)
            except OSError as e:  # permission, vanished since the re-check: record it, go on
                refused.append({"path": p, "reason": f"{type(e).__name__}: {e.strerror or e}"})
                continue
            deleted.append(p)
            freed += size
        return {"deleted": deleted, "freed_bytes": freed, "refused": refused, "listed": len(paths)}

    return Action(
        name=name,
        target=f"{pattern} older than {max_age_days:g} days under {', '.join(roots)}",
        description=f"delete the {len(paths)} listed files (each re-checked: regular file, inside the folders, "
                    "still old enough)",
        execute=execute, preview=preview,
    )


def prune_docker(platform_factory: Callable[[], Any], volumes: bool) -> Action:
    """``docker system prune -a`` through the platform; volumes only when ``volumes`` is true."""

    def preview() -> dict:
        return {"engine_disk_usage": platform_factory().disk_usage(), "volumes": volumes}

    def execute() -> dict:
        platform = platform_factory()
        before = platform.disk_usage()
        result = platform.prune(volumes=volumes)
        return {**result, "before": before, "after": platform.disk_usage()}

    what = "stopped containers and unused images" + (" and unused volumes" if volumes else
                                                     " (volumes kept: approve prune-docker-volumes too)")
    return Action(name="prune-docker", target="container engine", description=f"prune {what}",
                  execute=execute, preview=preview)
