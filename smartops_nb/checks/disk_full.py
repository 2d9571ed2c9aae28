"""Who decides ``disk-nearly-full``, ``old-logs``, ``old-backups`` and ``docker-reclaimable``.

Pure functions: data from the disk probe (and the platform's ``docker system df``) in,
:class:`Finding` or :class:`Diagnosis` out.
"""
from __future__ import annotations

from enum import StrEnum

import pandas as pd

from smartops_nb.findings import Diagnosis, Finding, by_check, reads
from .common import measured, mib


class Step(StrEnum):
    """The step ids of this runbook's notebook cells (``run.step(Step.X, ...)``), read by the checks below."""

    USAGE = "disk-usage"
    LARGEST = "largest"
    OLD_LOGS = "old-logs"
    OLD_BACKUPS = "old-backups"
    ENGINE_DISK = "docker-disk-usage"


def check_usage(df: pd.DataFrame, warn_pct: float) -> Finding:
    rows = df.to_dict("records")
    full = [r["path"] for r in rows if r["used_pct"] >= warn_pct]
    text = "; ".join(f"{r['path']} {r['used_pct']:g}% used ({mib(r['avail_bytes'])} MiB free of "
                     f"{mib(r['total_bytes'])} MiB)" for r in rows)
    data = {"paths": rows, "warn_pct": warn_pct, "full": full}
    if full:
        return Finding("critical", f"{text}: {', '.join(full)} at or above {warn_pct:g}%", data)
    if any(r["used_pct"] >= warn_pct * 0.8 for r in rows):
        return Finding("warn", f"{text}: approaching {warn_pct:g}%", data)
    return Finding("ok", text, data)


def check_largest(folders: pd.DataFrame, files: pd.DataFrame, walk: dict) -> Finding:
    data = {**walk, "folders": folders.head(10).to_dict("records"), "files": files.head(10).to_dict("records")}
    head = (f"largest under {walk['root']}: " + (f"folder {folders.iloc[0]['folder']} ({folders.iloc[0]['mib']:g} MiB)"
                                                 if len(folders) else "no folder")
            + (f", file {files.iloc[0]['file']} ({files.iloc[0]['mib']:g} MiB)" if len(files) else ""))
    if walk.get("errors"):
        return Finding("warn", f"{head}; could not read {'; '.join(walk['errors'])}: sizes are incomplete", data)
    if not walk["complete"]:
        return Finding("warn", f"{head}; walk stopped early ({walk['stopped']}, {walk['visited']} entries): "
                               "sizes are a lower bound", data)
    return Finding("ok", f"{head} ({walk['visited']} entries walked)", data)


def check_old_files(listing: pd.DataFrame, kind: str, pattern: str, max_age_days: float) -> Finding:
    files = listing[~listing["is_symlink"].astype(bool)] if len(listing) else listing
    links = listing[listing["is_symlink"].astype(bool)] if len(listing) else listing
    total = int(files["size_bytes"].sum()) if len(files) else 0
    data = {"kind": kind, "pattern": pattern, "max_age_days": max_age_days, "count": int(len(files)),
            "reclaimable_bytes": total, "symlinks_not_counted": [str(p) for p in links["path"]] if len(links) else [],
            "files": files.head(50).to_dict("records") if len(files) else [], "found": bool(len(files))}
    text = f"{len(files)} {kind} ({pattern}) older than {max_age_days:g} days, {mib(total)} MiB reclaimable"
    if len(links):
        text += f"; {len(links)} symlinks matching the pattern are not counted and will not be followed"
    errors = list(listing.attrs.get("root_errors") or [])
    data["root_errors"] = errors
    if errors:
        text += f"; could not read {'; '.join(errors)}: the listing is incomplete"
    return Finding("warn" if len(files) or errors else "ok", text, data)


def check_docker(df: dict, on_paths: list[str] | None = None) -> Finding:
    """The engine's reclaimable space, and whether its storage (``root_dir``) shares a filesystem with
    any of ``disk_paths`` (``on_paths``; None = not known from here): space reclaimed on another
    disk frees nothing on the full one. Volumes are counted apart: prune-docker keeps them."""
    parts = {k: v for k, v in df.items() if isinstance(v, dict)}
    volumes = int((parts.get("volumes") or {}).get("reclaimable_bytes", 0))
    prunable = int(df.get("reclaimable_bytes", 0)) - volumes
    data = {**df, "reclaimable": bool(df.get("reclaimable_bytes")), "prunable_without_volumes_bytes": prunable,
            "volumes_reclaimable_bytes": volumes, "on_disk_paths": on_paths}
    text = (f"container engine uses {mib(df.get('total_bytes', 0))} MiB, {mib(df.get('reclaimable_bytes', 0))} MiB "
            "reclaimable (" + ", ".join(f"{k} {mib(v.get('reclaimable_bytes', 0))}" for k, v in parts.items()) + ")")
    if volumes:
        text += f"; {mib(volumes)} MiB of it in volumes, freed only if prune-docker-volumes is approved too"
    root = df.get("root_dir")
    if on_paths is None:
        text += f"; its storage ({root or 'location not reported'}) cannot be seen from here"
    elif on_paths:
        text += f"; its storage {root} is on the filesystem of {', '.join(on_paths)}"
    else:
        text += f"; its storage {root} is on none of the checked paths' filesystems"
    return Finding("warn" if data["reclaimable"] else "ok", text, data)


def _fills(finding: Finding, full: list[str]) -> bool:
    """Does what this finding found take space on one of the ``full`` paths' filesystems?"""
    if finding.check != CONTRIBUTORS["docker-reclaimable"]:
        return bool(finding.data.get("found"))
    on = finding.data.get("on_disk_paths")
    return bool(finding.data.get("reclaimable")) and (on is None or bool(set(on) & set(full)))


def docker_table(df: dict) -> pd.DataFrame:
    rows = [{"type": k, "count": v.get("count", 0), "size_mib": mib(v.get("size_bytes", 0)),
             "reclaimable_mib": mib(v.get("reclaimable_bytes", 0))} for k, v in df.items() if isinstance(v, dict)]
    return pd.DataFrame(rows, columns=["type", "count", "size_mib", "reclaimable_mib"])


CONTRIBUTORS = {"old-logs": Step.OLD_LOGS, "old-backups": Step.OLD_BACKUPS, "docker-reclaimable": Step.ENGINE_DISK}


@reads(Step.USAGE, Step.OLD_LOGS, Step.OLD_BACKUPS, Step.ENGINE_DISK)
def diagnose(findings: list[Finding], params) -> Diagnosis:
    """disk-nearly-full from usage; what fills it only counts while a disk is nearly full."""
    f = by_check(findings)
    usage_f = f.get(Step.USAGE)
    if not (usage_f and usage_f.data.get("full")):
        return Diagnosis([], "Disk full not confirmed: " + measured(f, (Step.USAGE,)))
    causes, why = ["disk-nearly-full"], [usage_f.summary + "."]
    for cause, check in CONTRIBUTORS.items():
        x = f.get(check)
        if x and _fills(x, usage_f.data["full"]):
            causes.append(cause)
            why.append(x.summary + ".")
    actions = {"old-logs": "delete-old-logs", "old-backups": "delete-old-backups", "docker-reclaimable": "prune-docker"}
    todo = [actions[c] for c in causes if c in actions]
    advice = (f" Recommended: {', '.join(todo)}." if todo else
              " Nothing known to reclaim: see the largest folders and files, or grow the disk.")
    return Diagnosis(causes, "Disk nearly full. " + " ".join(why) + advice)
