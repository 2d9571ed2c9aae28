"""The layering the README describes holds: import-linter's contracts (pyproject.toml) pass."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]


def test_at_most_ten_modules_at_the_top_of_the_package():
    top = sorted(p.name for p in (REPO / "smartops_nb").glob("*.py"))
    assert len(top) <= 10, top
