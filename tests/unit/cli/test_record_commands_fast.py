"""Host commands that read records answer at once: they never import nbformat (its jsonschema's
rfc3987-syntax builds a grammar at import, ~1.6 s of CPU), only commands that validate or write a
notebook do. Each command runs in a fresh interpreter and reports what it loaded."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.fixtures.archives import write

REPO = __import__("pathlib").Path(__file__).resolve().parents[3]

PROBE = """\
import json, sys
{code}
print(json.dumps(sorted(m for m in ('nbformat', 'jsonschema', 'papermill') if m in sys.modules)))
"""


def _loaded(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(code=code)], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_archive_show_and_incident_show_load_no_notebook_format(tmp_path):
    path = write(tmp_path, incident_id="INC-7")
    for argv in (["archive", "show", path.name, "--archive", str(tmp_path)],
                 ["archive", "show", path.name, "--archive", str(tmp_path), "--json"],
                 ["incident", "show", "INC-7", "--archive", str(tmp_path)]):
        code = f"from smartops_nb.cli.main import main\nrc = main({argv!r})\nassert rc == 0, rc"
        assert _loaded(code) == [], argv


def test_approve_and_serve_start_load_no_notebook_format():
    """What `smartops approve` and `smartops serve` import to start (a run imports papermill later)."""
    code = ("import smartops_nb.cli.main, smartops_nb.cli.approve, smartops_nb.execution.approve, "
            "smartops_nb.server.serve, smartops_nb.cli.serve")
    assert _loaded(code) == []
