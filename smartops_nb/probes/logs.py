"""Read the API's recent log lines: from a log file (sandbox, bare hosts) or from the platform."""
from __future__ import annotations

from collections import deque
from pathlib import Path

from .. import redact


def tail_file(path: str | Path, lines: int = 100) -> list[str]:
    """The last ``lines`` lines of a text file, read without loading it whole."""
    with open(path, "rb") as f:
        last = deque(f, maxlen=lines)
    return [redact.scrub(b.decode("utf-8", "replace").rstrip("\n")) for b in last]


def api_logs(params, platform_factory, lines: int = 100) -> tuple[str, list[str]]:
    """(source, lines): ``api_log_path`` when given, else the API workload's logs on the platform."""
    if params.get("api_log_path"):
        path = Path(params.api_log_path).expanduser()
        return f"file {path}", tail_file(path, lines)
    from .. import platforms
    from . import workloads

    return (f"{params.platform} {platforms.workload(params, 'api')}",
            workloads.logs(params, platform_factory, "api", lines))
