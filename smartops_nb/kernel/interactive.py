"""A runbook worked by hand in JupyterLab: its parameters file, and its incident record.

Two things make a hand-run runbook match a headless one:

* **Parameters.** ``smartops lab`` names a parameters file in ``SMARTOPS_PARAMETERS`` (several
  separated by ``:``, later ones winning). In a live session — a kernel of a Jupyter server session,
  not under papermill — :func:`apply_parameters_file` (called by :func:`smartops_nb.begin`) puts the
  file's values for this runbook's parameters into the notebook's globals, over the parameters cell,
  exactly where papermill's injected cell would put them, and says which ones it took. Under
  papermill (``smartops run``, CI) nothing here runs: the parameters cell and ``-f``/``-p`` decide.
* **The record.** :func:`save_record` (and the "Save incident record" button that
  :meth:`Run.finish <smartops_nb.kernel.run.Run.finish>` shows in a live session) asks the page to save the
  notebook, reads the ``.ipynb`` from disk, and writes it with the run's summary through
  :meth:`smartops_nb.records.archive.Archive.store`, the method headless runs use: same metadata, same scrubbing,
  same archive. Actions approved with a button are in the run's action log like any other.

The page is asked to save through a small script output that finds the notebook by its kernel id
and calls its ``save()``; JupyterLab exposes its application object to page scripts when started
with ``--LabApp.expose_app_in_browser`` (``smartops lab`` does). Without it the notebook is taken as
last saved, and the record says so in its timeline.
"""
from __future__ import annotations

import html
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, MutableMapping

from . import approvals, display
from smartops_nb import redact

from smartops_nb.contract import CONTACTS_ENV, LESSONS_ENV, PARAMETERS_ENV, PUBLIC_URL_ENV, SESSION_ENV
from smartops_nb.support.reasons import one_line

if TYPE_CHECKING:  # imported where a record is saved: nbformat pulls in jsonschema, whose optional
    import nbformat  # rfc3987-syntax builds a grammar on import (~1.6 s of every kernel's start, profiled)
SAVE_MARK = "save-request"  # metadata of our own script outputs, removed from the record
_current = None


# -- parameters -------------------------------------------------------------------------------
def live_session() -> bool:
    """A kernel of a Jupyter server session (JupyterLab) and not a papermill run."""
    return bool(os.environ.get(SESSION_ENV)) and not approvals.under_papermill()


def parameters_files() -> list[Path]:
    return [Path(p).expanduser() for p in os.environ.get(PARAMETERS_ENV, "").split(os.pathsep) if p.strip()]


def apply_parameters_file(runbook_id: str, namespace: MutableMapping[str, Any]) -> dict[str, Any]:
    """Put the parameters file's values into the notebook's globals (live sessions only); return them."""
    files = parameters_files()
    if not files or not live_session():
        return {}
    from smartops_nb import response
    from smartops_nb.params import CONFIG_SECTIONS, check_types, load_yaml_files

    values = load_yaml_files(files)
    config = {k: values.pop(k) for k in CONFIG_SECTIONS if k in values}
    if "contacts" in config and not os.environ.get(CONTACTS_ENV):
        os.environ[CONTACTS_ENV] = json.dumps(response.contacts(config["contacts"]))
    known = {k: v for k, v in values.items() if k in namespace and not k.startswith("_")}
    check_types(known, {k: namespace[k] for k in known})  # the cell's literals give the types
    namespace.update(known)
    names = ", ".join(sorted(known)) or "none of this runbook's parameters"
    display.show_message(f"Parameters from {', '.join(map(str, files))} ({PARAMETERS_ENV}) override the "
                         f"parameters cell, as `smartops run -f` would: {names}. Edit that file (or start "
                         f"`smartops lab -f ''`) to use the cell's values.", "ok")
    return {"files": [str(f) for f in files], "values": known}


def lessons(runbook_id: str) -> tuple[list[dict[str, Any]], Any]:
    """The runbook's lessons from earlier incidents, and how to link an incident: a headless run gets
    them from the runner; a live session reads the lab's archive. Never raises (a run does not wait on it)."""
    from urllib.parse import quote

    public = os.environ.get(PUBLIC_URL_ENV, "").rstrip("/")
    link = (lambda i: f"{public}/incidents/{quote(i, safe='')}") if public else None
    raw = os.environ.get(LESSONS_ENV)
    try:
        if raw is not None:
            return list(json.loads(raw)), link
        if not live_session():
            return [], link
        from smartops_nb.records.checklist_store import Store
        from smartops_nb.records.archive import open_archive

        return Store(open_archive()).lessons(runbook=runbook_id, limit=10), link
    except Exception:
        return [], link


def track(run, applied: dict[str, Any] | None = None):
    """Remember the notebook's run (for :func:`save_record`) and the parameters it took from a file."""
    global _current
    run.parameters_file = applied or {}
    _current = run
    return run


def current():
    if _current is None:
        raise RuntimeError("no runbook run in this kernel: run the notebook's first cells (smartops_nb.begin)")
    return _current


# -- the notebook on disk ------------------------------------------------------------------------
def notebook_path() -> Path:
    """The notebook this kernel belongs to (jupyter_server gives its kernels the path)."""
    path = os.environ.get(SESSION_ENV)
    if not path:
        try:
            from IPython import get_ipython

            path = (get_ipython().user_ns or {}).get("__session__")
        except Exception:
            path = None
    if not path or not path.endswith(".ipynb"):
        raise RuntimeError("this kernel does not know its notebook (not started by JupyterLab?): "
                           "save the notebook and run `smartops run` instead")
    return Path(path)


def _kernel_id() -> str:
    try:
        from ipykernel import get_connection_file

        name = Path(get_connection_file()).stem  # jupyter_server names it kernel-<id>.json
        return name[len("kernel-"):] if name.startswith("kernel-") else ""
    except Exception:
        return ""


_SAVE_JS = """
(async () => {
  const app = window.jupyterapp;
  if (!app) { console.warn("smartops: JupyterLab app not exposed; cannot save"); return; }
  const kernelId = %(kernel)s, path = %(path)s;
  for (const w of app.shell.widgets("main")) {
    const ctx = w.context, kernel = w.sessionContext?.session?.kernel;
    if (!ctx || !ctx.path.endsWith(".ipynb")) continue;
    if ((kernelId && kernel && kernel.id === kernelId) || (!kernelId && path.endsWith("/" + ctx.path))) {
      await ctx.save();
    }
  }
})();
"""


def request_save(path: Path, timeout: float = 15) -> bool:
    """Ask the page to save the notebook and wait until the file on disk changes; False if it did not."""
    from IPython.display import Javascript, display as ipy_display

    before = path.stat().st_mtime_ns if path.exists() else 0
    code = _SAVE_JS % {"kernel": json.dumps(_kernel_id()), "path": json.dumps(str(path))}
    handle = ipy_display(Javascript(code), metadata={"smartops": SAVE_MARK}, display_id=True)
    deadline = time.monotonic() + timeout
    saved = False
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_mtime_ns != before:
            time.sleep(0.2)  # the server writes a temporary file and renames it: let it settle
            saved = True
            break
        time.sleep(0.1)
    if handle is not None:  # leave no script behind in the live notebook
        handle.update({"text/plain": ""}, raw=True, metadata={"smartops": SAVE_MARK})
    return saved


def _clean(nb: "nbformat.NotebookNode") -> None:
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.get("outputs", []) if o.get("metadata", {}).get("smartops") != SAVE_MARK]


def _injected_cell(applied: dict[str, Any]) -> "nbformat.NotebookNode":
    """Papermill's "injected-parameters" cell, for the values a parameters file gave this run."""
    import nbformat

    lines = [f"# Parameters from {', '.join(applied['files'])} (applied by smartops_nb.begin in JupyterLab)"]
    lines += [f"{k} = {(redact.mask_url(v) if isinstance(v, str) else v)!r}" for k, v in applied["values"].items()]
    return nbformat.v4.new_code_cell("\n".join(lines), metadata={"tags": ["injected-parameters"]})


# -- the record --------------------------------------------------------------------------------
def save_record(run=None, archive: str | os.PathLike | None = None, *, timeout: float = 15) -> Path:
    """Save this notebook, as it is on the page, with the run's summary as an incident record; return its path."""
    from smartops_nb.records.archive import open_archive
    from smartops_nb.params import iso, utcnow

    import nbformat

    run = run or current()
    path = notebook_path()
    saved = request_save(path, timeout)
    if not saved:
        run.event("record saved from the notebook as last saved on disk (the page did not save it)")
    nb = nbformat.read(path, as_version=4)
    _clean(nb)
    applied = getattr(run, "parameters_file", None) or {}
    if applied.get("values"):
        at = next((i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])), -1)
        nb.cells.insert(at + 1, _injected_cell(applied))
    finished = run.finished_at is not None
    summary = run.summary("completed" if finished else "incomplete")
    summary["origin"] = "jupyterlab"
    if not finished:
        summary["finished_at"] = iso(utcnow())
        summary["error"] = "saved from JupyterLab before run.finish()"
    secrets = redact.secrets_in(run.params.raw())
    # a folder, or s3://... with $SMARTOPS_INDEX (the lab hands both to its kernels)
    out, _ = open_archive(archive).store(nb, summary, secrets=secrets, add_cell=not finished)
    run.event(f"incident record saved: {Path(str(out)).name}")
    return out


def offer_save(run) -> None:
    """The "Save incident record" button under the summary (live sessions with widgets only)."""
    if not approvals.interactive():
        return
    import ipywidgets as w
    from IPython.display import display as ipy_display

    button = w.Button(description="Save incident record", icon="save", button_style="primary",
                      layout=w.Layout(width="auto"))
    status = w.HTML("")
    scratch = w.Output(layout=w.Layout(display="none"))  # where the save request's script runs

    def click(_):
        button.disabled = True
        status.value = "<p>Saving…</p>"
        try:
            with scratch:
                out = save_record(run)
            status.value = (f"<p>{display.badge('ok')} Record saved: <code class='smartops-record'>"
                            f"{html.escape(str(out))}</code></p>")
        except Exception as e:  # shown beside the button; the notebook stays as it is
            status.value = f"<p>{display.badge('error')} Not saved: {html.escape(one_line(e))}</p>"
        finally:
            button.disabled = False

    button.on_click(click)
    ipy_display(w.VBox([w.HBox([button, status]), scratch]))
