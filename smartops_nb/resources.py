"""What this process holds: open descriptors, resident memory, threads — for ``/healthz`` and the logs.

A service that runs for months must release what each run opened; these are the figures an operator
(and the soak test) watches to see that it does. Linux ``/proc``; elsewhere the figures are None.
"""
from __future__ import annotations

import os
import threading
from typing import Any


def open_descriptors(pid: int | str = "self") -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def rss_mib(pid: int | str = "self") -> float | None:
    """Resident set size in MiB (``VmRSS``)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def descriptor_limit() -> int | None:
    try:
        import resource

        return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return None


def process_stats() -> dict[str, Any]:
    """This process: open descriptors (and the soft limit), RSS in MiB, live Python threads."""
    return {"pid": os.getpid(), "open_fds": open_descriptors(), "fd_limit": descriptor_limit(),
            "rss_mib": rss_mib(), "threads": threading.active_count()}
