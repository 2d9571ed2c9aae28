"""The notebooks are ordinary, thin papermill notebooks whose parameters cells come from one declaration."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest
import yaml

from smartops_nb import catalog
from smartops_nb.execution.prepare import all_known_parameters
from smartops_nb.params import CONFIG_SECTIONS

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
RUNBOOKS = list(catalog.RUNBOOKS.values())


def test_every_runbook_has_its_notebook():
    missing = [rb.notebook for rb in RUNBOOKS if not rb.path.exists()]
    assert not missing


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_one_parameters_cell_and_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, "commit notebooks without outputs"


def test_parameters_cells_are_generated_from_the_declaration():
    out = subprocess.run([sys.executable, str(REPO / "tools" / "notebook_parameters.py"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("rb", RUNBOOKS, ids=lambda rb: rb.id)
def test_papermill_sees_every_declared_parameter_with_its_type_and_help(rb):
    inspected = papermill.inspect_notebook(str(rb.path))
    assert list(inspected) == list(rb.parameters)
    for name, spec in inspected.items():
        declared = rb.parameters[name]
        assert spec["inferred_type_name"] == declared.type.__name__, name
        assert spec["help"] == declared.help, name


@pytest.mark.parametrize("rb", RUNBOOKS, ids=lambda rb: rb.id)
def test_runbook_cells_are_thin(rb):
    nb = nbformat.read(rb.path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "parameters" not in cell.metadata.get("tags", []):
            code = [l for l in cell.source.splitlines() if l.strip() and not l.strip().startswith("#")]
            assert len(code) <= 12, f"cell {i} has {len(code)} lines: move the logic into smartops_nb"
    assert "record = run.finish()" in nb.cells[-1].source


# routes*.yaml map alerts to runbooks (smartops serve); every other file holds runbook parameters
PARAMETER_FILES = sorted(p for p in (REPO / "parameters").glob("*.yaml") if not p.name.startswith("routes"))


@pytest.mark.parametrize("path", PARAMETER_FILES, ids=lambda p: p.name)
def test_every_key_in_parameters_files_is_a_known_parameter(path):
    data = yaml.safe_load(path.read_text()) or {}
    unknown = set(data) - all_known_parameters() - set(CONFIG_SECTIONS)
    assert not unknown, f"{path.name}: {sorted(unknown)} are parameters of no runbook"


def test_production_example_documents_every_parameter():
    text = (REPO / "parameters" / "production.example.yaml").read_text()
    documented = set(yaml.safe_load(text))
    assert all_known_parameters() <= documented, sorted(all_known_parameters() - documented)
