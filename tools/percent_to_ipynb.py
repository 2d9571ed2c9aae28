"""Developer tool: write a runbook notebook from a 'percent' text file.

    python tools/percent_to_ipynb.py SOURCE.py notebooks/NAME.ipynb

Cells start with ``# %%`` (code), ``# %% [markdown]`` (markdown, lines prefixed by ``# ``) or
``# %% parameters`` (the papermill parameters cell). Outputs are empty, so the result is what
git should hold. JupyterLab stays the place to edit notebooks; this only bootstraps them.
"""
from __future__ import annotations

import sys

import nbformat


def convert(text: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
        "language_info": {"name": "python"},
    }
    kind, lines = None, []

    def flush():
        if kind is None:
            return
        src = "\n".join(lines).strip("\n")
        if kind == "markdown":
            src = "\n".join(l[2:] if l.startswith("# ") else l.lstrip("#") for l in src.splitlines())
            nb.cells.append(nbformat.v4.new_markdown_cell(src))
        else:
            cell = nbformat.v4.new_code_cell(src)
            if kind == "parameters":
                cell.metadata["tags"] = ["parameters"]
            nb.cells.append(cell)

    for line in text.splitlines():
        if line.startswith("# %%"):
            flush()
            rest = line[4:].strip()
            kind = "markdown" if rest == "[markdown]" else "parameters" if rest == "parameters" else "code"
            lines = []
        else:
            lines.append(line)
    flush()
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i}"
    return nb


if __name__ == "__main__":
    src, dst = sys.argv[1:3]
    nbformat.write(convert(open(src).read()), dst)
