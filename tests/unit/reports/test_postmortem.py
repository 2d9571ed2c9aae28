"""A post-mortem drafted from a real sandbox incident: investigate, mitigate (approved), confirm."""
from __future__ import annotations

import pytest

from smartops_nb.cli import main as cli


def _record(folder, **summary):
    """A minimal record file (no sandbox needed) with the given summary."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["smartops"] = {"runbook": "db-pool-exhausted", "incident_id": "INC-7", "severity": "P2",
                               "detected_at": "2026-11-26T14:00:00Z", "started_at": "2026-11-26T14:03:12Z",
                               "status": "completed", "diagnosis": {"confirmed": False, "causes": []}, **summary}
    for key in [k for k, v in summary.items() if v is None]:
        del nb.metadata["smartops"][key]
    path = folder / f"record-{len(list(folder.glob('*.ipynb')))}.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.mark.parametrize("summary, says", [({"started_at": None}, "no started_at"),
                                           ({"started_at": "yesterday"}, "'yesterday' is not an ISO 8601 time"),
                                           ({"actions": [{"action": "restart", "target": "db", "mode": "executed",
                                                          "at": "soon"}]}, "'soon' is not an ISO 8601 time")])
def test_a_record_without_usable_times_exits_2_in_one_line(tmp_path, capsys, summary, says):
    path = _record(tmp_path, **summary)
    assert cli.main(["postmortem", str(path), "-o", str(tmp_path / "pm.md")]) == 2
    err = capsys.readouterr().err
    assert says in err and str(path) in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "pm.md").exists()


def test_an_unwritable_output_exits_1_in_one_line(tmp_path, capsys):
    path = _record(tmp_path)
    (tmp_path / "taken").write_text("a file, not a folder")
    assert cli.main(["postmortem", str(path), "-o", str(tmp_path / "taken" / "pm.md")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("smartops postmortem: cannot write") and len(err.strip().splitlines()) == 1, err
    assert cli.main(["postmortem", str(path), "-o", str(tmp_path / "ok" / "pm.md")]) == 0  # the record is fine
    assert "**Incident:** INC-7" in (tmp_path / "ok" / "pm.md").read_text()

