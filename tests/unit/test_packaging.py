"""pyproject.toml and environment.yml list the same Python dependencies."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
# conda-forge names of PyPI packages where they differ
CONDA_NAMES = {"docker": "docker-py", "kubernetes": "python-kubernetes", "redis": "redis-py", "psycopg": "psycopg"}


def _name(req: str) -> str:
    return re.split(r"[\[<>=!~ ]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pypi = {_name(r) for r in project["dependencies"]}
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda, pip = set(), set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip |= {_name(d) for d in dep["pip"] if not d.startswith("-")}
        else:
            conda.add(_name(dep))
    conda -= {"python", "pip"}
    expected = {CONDA_NAMES.get(n, n) for n in pypi}
    listed = conda | {CONDA_NAMES.get(n, n) for n in pip}
    assert listed == expected, f"only in environment.yml: {sorted(listed - expected)}; " \
                               f"only in pyproject.toml: {sorted(expected - listed)}"
