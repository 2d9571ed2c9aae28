"""Read filesystems: usage per path, the largest folders and files, files older than a limit.

Read only. Every walk is bounded (entries visited, a time budget), stays on the filesystem it
starts on, and never follows a symlink: a symlink is reported as such (``is_symlink``) and never
descended into or sized through, so a link planted in a log folder cannot lead the runbook out.
"""
from __future__ import annotations

import fnmatch
import os
import stat
import time
from typing import Iterable, Iterator

import pandas as pd

MAX_ENTRIES = 200_000
TIME_BUDGET_S = 20.0
OLD_COLUMNS = ["path", "root", "size_bytes", "age_days", "is_symlink"]


def usage(paths: Iterable[str]) -> pd.DataFrame:
    """Like ``df``: per path its filesystem's size, used, available and used % (of used + available).

    ``~`` is expanded; a path that does not exist raises ``FileNotFoundError`` saying so."""
    rows = []
    for p in paths:
        p = os.path.expanduser(str(p))
        if not os.path.exists(p):
            raise FileNotFoundError(f"disk path {p} does not exist (not mounted, or a wrong disk_paths entry)")
        st = os.statvfs(p)
        total, free, avail = st.f_blocks * st.f_frsize, st.f_bfree * st.f_frsize, st.f_bavail * st.f_frsize
        used = total - free
        rows.append({"path": str(p), "total_bytes": total, "used_bytes": used, "avail_bytes": avail,
                     "used_pct": round(100.0 * used / max(used + avail, 1), 1),
                     "total_mib": round(total / 2 ** 20, 1), "used_mib": round(used / 2 ** 20, 1)})
    return pd.DataFrame(rows, columns=["path", "total_bytes", "used_bytes", "avail_bytes", "used_pct",
                                       "total_mib", "used_mib"])


class Budget:
    """How far a walk may go: entries visited and seconds spent; says why it stopped."""

    def __init__(self, max_entries: int = MAX_ENTRIES, seconds: float = TIME_BUDGET_S):
        self.max_entries, self.deadline, self.seconds = int(max_entries), time.monotonic() + seconds, seconds
        self.visited = 0
        self.stopped = ""
        self.errors: list[str] = []  # roots that could not be read (missing, not a folder, no permission)

    def spend(self) -> bool:
        self.visited += 1
        if self.visited > self.max_entries:
            self.stopped = f"entry limit {self.max_entries} reached"
        elif time.monotonic() > self.deadline:
            self.stopped = f"time budget {self.seconds:g} s spent"
        return not self.stopped


def walk(root: str, budget: Budget, one_fs: bool = True) -> Iterator[tuple[str, os.stat_result]]:
    """(path, lstat) of every entry under ``root``: no symlink followed, no other filesystem entered.

    A ``root`` that cannot be read is recorded in ``budget.errors`` (an unreadable folder below it
    is skipped)."""
    try:
        dev = os.lstat(root).st_dev
    except OSError as e:
        budget.errors.append(f"{root}: {e.strerror or type(e).__name__}")
        return
    stack = [root]
    while stack and not budget.stopped:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError as e:
            if folder == root:
                budget.errors.append(f"{root}: {e.strerror or type(e).__name__}")
            continue  # unreadable or vanished: skip, the walk goes on
        for e in entries:
            if not budget.spend():
                return
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            yield e.path, st
            if stat.S_ISDIR(st.st_mode) and (not one_fs or st.st_dev == dev):
                stack.append(e.path)


def largest(root: str, n: int = 20, max_entries: int = MAX_ENTRIES,
            seconds: float = TIME_BUDGET_S) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(folders, files, walk facts) under ``root``: the ``n`` largest top-level folders (``du -sh
    ROOT/*``, apparent sizes of regular files) and the ``n`` largest files."""
    budget = Budget(max_entries, seconds)
    root = os.path.abspath(os.path.expanduser(root))
    by_top: dict[str, int] = {}
    files: list[tuple[str, int]] = []
    for path, st in walk(root, budget):
        if not stat.S_ISREG(st.st_mode):
            continue
        rel = os.path.relpath(path, root)
        top = rel.split(os.sep, 1)[0]
        key = os.path.join(root, top) if os.sep in rel else "(files directly in root)"
        by_top[key] = by_top.get(key, 0) + st.st_size
        files.append((path, st.st_size))
    folders = pd.DataFrame(sorted(by_top.items(), key=lambda kv: -kv[1])[:n], columns=["folder", "size_bytes"])
    folders["mib"] = (folders["size_bytes"] / 2 ** 20).round(2)
    top_files = pd.DataFrame(sorted(files, key=lambda kv: -kv[1])[:n], columns=["file", "size_bytes"])
    top_files["mib"] = (top_files["size_bytes"] / 2 ** 20).round(2)
    return folders, top_files, {"root": root, "visited": budget.visited, "complete": not budget.stopped,
                                "stopped": budget.stopped, "errors": budget.errors}


def old_files(roots: Iterable[str], pattern: str, max_age_days: float, max_entries: int = MAX_ENTRIES,
              seconds: float = TIME_BUDGET_S, now: float | None = None) -> pd.DataFrame:
    """Entries named like ``pattern`` under ``roots`` whose mtime is older than ``max_age_days``.

    Symlinks matching the pattern are listed with ``is_symlink`` true (their own lstat age), so
    that a deletion refuses them on the record instead of silently skipping them. Roots that
    cannot be read (missing, unreadable) are listed in ``.attrs["root_errors"]``; ``~`` is expanded.
    """
    now = time.time() if now is None else now
    budget = Budget(max_entries, seconds)
    rows = []
    for root in roots:
        root = os.path.abspath(os.path.expanduser(root))
        for path, st in walk(root, budget):
            link = stat.S_ISLNK(st.st_mode)
            if not (link or stat.S_ISREG(st.st_mode)) or not fnmatch.fnmatch(os.path.basename(path), pattern):
                continue
            age = (now - st.st_mtime) / 86400
            if age > max_age_days:
                rows.append({"path": path, "root": root, "size_bytes": 0 if link else st.st_size,
                             "age_days": round(age, 1), "is_symlink": link})
    out = pd.DataFrame(rows, columns=OLD_COLUMNS).sort_values("size_bytes", ascending=False, ignore_index=True)
    out.attrs["root_errors"] = list(budget.errors)
    return out


def sharing_filesystem(folder: str | None, paths: Iterable[str]) -> list[str] | None:
    """Those of ``paths`` on the same filesystem as ``folder``; None when ``folder`` is unknown or
    not visible from here (a remote engine's storage, another mount namespace)."""
    if not folder:
        return None
    try:
        dev = os.stat(folder).st_dev
    except OSError:
        return None
    out = []
    for p in paths:
        try:
            if os.stat(os.path.expanduser(str(p))).st_dev == dev:
                out.append(str(p))
        except OSError:
            continue
    return out


def file_age_days(path: str, now: float | None = None) -> float:
    """Age of ``path`` itself (lstat: a symlink's own mtime), in days."""
    return ((time.time() if now is None else now) - os.lstat(path).st_mtime) / 86400


def under(path: str, roots: Iterable[str]) -> str | None:
    """The configured root that really contains ``path`` (every symlink resolved), else None."""
    real = os.path.realpath(path)
    for root in roots:
        r = os.path.realpath(os.path.expanduser(root))
        if os.path.commonpath([real, r]) == r and real != r:
            return root
    return None


def largest_many(roots: Iterable[str], n: int = 20, max_entries: int = MAX_ENTRIES,
                 seconds: float = TIME_BUDGET_S) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """:func:`largest` for each root (each with its own budget), tables tagged by ``root``."""
    folders, files, walks = [], [], []
    for root in roots:
        d, f, w = largest(root, n, max_entries, seconds)
        folders.append(d.assign(root=w["root"]))
        files.append(f.assign(root=w["root"]))
        walks.append(w)
    def cat(frames: list[pd.DataFrame], first: str) -> pd.DataFrame:
        if not frames:
            return pd.DataFrame(columns=[first, "size_bytes", "mib", "root"])
        return pd.concat(frames, ignore_index=True).sort_values("size_bytes", ascending=False, ignore_index=True)

    return cat(folders, "folder"), cat(files, "file"), {"walks": walks, "complete": all(w["complete"] for w in walks),
                                      "visited": sum(w["visited"] for w in walks),
                                      "errors": [e for w in walks for e in w["errors"]],
                                      "stopped": "; ".join(f"{w['root']}: {w['stopped']}" for w in walks
                                                           if w["stopped"]),
                                      "root": ", ".join(w["root"] for w in walks)}
