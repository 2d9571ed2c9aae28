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


def test_a_warm_kernel_imports_no_notebook_format_library():
    """What the warm-up loads into every kernel (execution/kernels.WARMUP_CODE) leaves out nbformat and
    jsonschema: jsonschema's optional rfc3987-syntax builds a grammar on import (~1.6 s of CPU per
    kernel, profiled); only saving a record from JupyterLab needs nbformat, and imports it then."""
    from smartops_nb.execution.kernels import WARMUP_CODE

    probe = WARMUP_CODE + "import sys\nprint(sorted(m for m in ('nbformat', 'jsonschema', 'papermill') if m in sys.modules))\n"
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_sql_on_procrastinate_s_tables_is_named_in_one_module():
    """Procrastinate is reached through its App and JobManager; the SQL it has no API for is in jobs/queue_sql.py."""
    import re

    sql = re.compile(r"\b(FROM|JOIN|INTO|UPDATE|TABLE)\s+procrastinate_\w+", re.IGNORECASE)
    found = [str(p.relative_to(REPO)) for p in (REPO / "smartops_nb").rglob("*.py")
             if sql.search(p.read_text()) and p.name != "queue_sql.py"]
    assert found == [], found
