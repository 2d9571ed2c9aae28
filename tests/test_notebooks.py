"""The notebooks are ordinary, thin papermill notebooks, and every parameters file speaks their language."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
import yaml

from smartops_nb import catalog
from smartops_nb.params import COMMON_DEFAULTS
from smartops_nb.runner import CONFIG_SECTIONS, notebook_parameters

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
RUNBOOK_NOTEBOOKS = [rb.path for rb in catalog.RUNBOOKS.values()]


def test_every_runbook_has_its_notebook():
    missing = [str(p.name) for p in RUNBOOK_NOTEBOOKS if not p.exists()]
    assert not missing


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_one_parameters_cell_and_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, "commit notebooks without outputs"


@pytest.mark.parametrize("path", RUNBOOK_NOTEBOOKS, ids=lambda p: p.name)
def test_runbook_cells_are_thin_and_share_the_common_parameters(path):
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "parameters" not in cell.metadata.get("tags", []):
            code = [l for l in cell.source.splitlines() if l.strip() and not l.strip().startswith("#")]
            assert len(code) <= 12, f"cell {i} has {len(code)} lines: move the logic into smartops_nb"
    params = notebook_parameters(path)
    assert set(COMMON_DEFAULTS) <= set(params), set(COMMON_DEFAULTS) - set(params)
    for name, default in COMMON_DEFAULTS.items():
        if name != "severity":
            assert params[name] == default, f"{path.name}: {name} default differs from the common contract"
    assert "record = run.finish()" in nb.cells[-1].source


# routes*.yaml map alerts to runbooks (smartops serve); every other file holds runbook parameters
PARAMETER_FILES = sorted(p for p in (REPO / "parameters").glob("*.yaml") if not p.name.startswith("routes"))


@pytest.mark.parametrize("path", PARAMETER_FILES, ids=lambda p: p.name)
def test_every_key_in_parameters_files_is_a_known_parameter(path):
    known = set().union(*(notebook_parameters(p) for p in RUNBOOK_NOTEBOOKS))
    data = yaml.safe_load(path.read_text()) or {}
    unknown = set(data) - known - set(CONFIG_SECTIONS)
    assert not unknown, f"{path.name}: {sorted(unknown)} are parameters of no notebook"


def test_production_example_documents_every_parameter():
    known = set().union(*(notebook_parameters(p) for p in RUNBOOK_NOTEBOOKS))
    text = (REPO / "parameters" / "production.example.yaml").read_text()
    documented = set(yaml.safe_load(text))
    assert known <= documented, sorted(known - documented)
