"""Every repository path a shipped file under deploy/ names (in a comment or its README) exists:
files that tell an operator where to look must not point at code or tests that moved."""
from __future__ import annotations

import re

import pytest

from tests.conftest import REPO

ROOTS = ("deploy", "smartops_nb", "smartops_sandbox", "tests", "parameters", "notebooks", "docs", "bench", "tools")
PATH = re.compile(rf"(?<![\w/.-])((?:{'|'.join(ROOTS)})/[\w./-]*\w)")
SHIPPED = sorted(p for p in (REPO / "deploy").rglob("*") if p.is_file() and p.suffix in (".yml", ".yaml", ".md", ".conf", ""))


def named_paths(text: str) -> set[str]:
    return set(PATH.findall(text))


def test_the_pattern_finds_paths_in_prose_and_comments():
    assert named_paths("# (see smartops_sandbox/api.py, X); run by `tests/scenarios/test_a.py`.") == {
        "smartops_sandbox/api.py", "tests/scenarios/test_a.py"}


@pytest.mark.parametrize("shipped", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_every_path_a_shipped_file_names_exists(shipped):
    missing = sorted(p for p in named_paths(shipped.read_text(errors="replace")) if not (REPO / p).exists())
    assert not missing, f"{shipped.relative_to(REPO)} names paths that do not exist: {missing}"
