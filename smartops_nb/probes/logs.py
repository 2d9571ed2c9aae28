"""Read the API's recent log lines: from a log file (bare hosts) or from the platform."""
from __future__ import annotations

import os
from pathlib import Path

from smartops_nb import redact


def tail_file(path: str | Path, lines: int = 100, block: int = 64 * 1024,
              max_bytes: int = 16 * 1024 * 1024) -> list[str]:
    """The last ``lines`` lines of a text file, read backwards from its end in ``block`` chunks
    (never more than ``max_bytes``: a file of one endless line is not read whole either)."""
    if lines <= 0:
        return []
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        pos, data = f.tell(), b""
        # one more newline than lines wanted: the first (partial) line is then dropped
        while pos > 0 and data.count(b"\n") <= lines and len(data) < max_bytes:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    text = data.split(b"\n")
    if text and text[-1] == b"":
        text.pop()  # the file's final newline ends the last line, it does not start a new one
    if pos > 0 and len(text) > lines:
        text = text[1:]  # the first piece may be the tail of a longer line
    return [redact.scrub(b.decode("utf-8", "replace").rstrip("\r")) for b in text[-lines:]]


def api_logs(params, platform_factory, lines: int = 100) -> tuple[str, list[str]]:
    """(source, lines): ``api_log_path`` when given, else the API workload's logs on the platform."""
    if params.get("api_log_path"):
        path = Path(params.api_log_path).expanduser()
        return f"file {path}", tail_file(path, lines)
    from smartops_nb import platforms
    from . import workloads

    return (f"{params.platform} {platforms.workload(params, 'api')}",
            workloads.logs(params, platform_factory, "api", lines))
