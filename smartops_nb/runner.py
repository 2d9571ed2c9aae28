"""Execute a runbook headless with papermill and turn the result into an incident record.

:func:`prepare` checks everything before anything runs (bad input → :class:`ParameterError`,
nothing executed). :func:`execute` runs the notebook in a fresh kernel, lifts the run's summary
(written by the kernel to a state file after every step, so it survives a dying kernel) into
``metadata["smartops"]``, scrubs secrets and writes the record.
"""
from __future__ import annotations

import ast
import copy
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import nbformat

from . import approvals, catalog, record, redact, response
from .params import (ParameterError, check_types, check_values, iso, load_yaml_files,
                     utcnow)
from . import notify
from .kernels import shutdown_kernel as _shutdown
from .run import STATE_ENV
from . import archive as record_archive  # `archive` is the folder argument below

log = logging.getLogger("smartops.runner")

#: Top-level sections of a parameters file that configure SmartOps itself, not a runbook.
CONFIG_SECTIONS = ("contacts", "notify")


@dataclass
class Prepared:
    runbook: catalog.Runbook
    parameters: dict[str, Any]       # what papermill injects (only names the notebook knows)
    config: dict[str, Any]           # non-parameter sections of the parameters files


@dataclass
class Result:
    record: Path
    summary: dict[str, Any]
    notifications: list[dict[str, Any]] = field(default_factory=list)  # outcomes, see notify.py

    @property
    def exit_code(self) -> int:
        return 0 if self.summary.get("status") == "completed" else 1


def notebook_parameters(path: Path) -> dict[str, Any]:
    """The notebook's parameters and their default values, from papermill's own inspection."""
    import papermill

    out = {}
    for name, spec in papermill.inspect_notebook(str(path)).items():
        try:
            out[name] = ast.literal_eval(spec["default"])
        except (ValueError, SyntaxError):
            out[name] = None
    return out


def notebook_kernel_name(nb: nbformat.NotebookNode | Path) -> str:
    """The kernel a runbook notebook asks for (its kernelspec name; python3 if it names none)."""
    if not isinstance(nb, nbformat.NotebookNode):
        nb = nbformat.read(nb, as_version=4)
    return nb.metadata.get("kernelspec", {}).get("name", "python3")


def all_known_parameters() -> set[str]:
    names: set[str] = set()
    for rb in catalog.available():
        names |= set(notebook_parameters(rb.path))
    return names


def prepare(runbook_id: str, files: Iterable[str] = (), cli: Mapping[str, Any] | None = None, *,
            base: Mapping[str, Any] | None = None) -> Prepared:
    """Resolve the runbook and merge ``-f`` files then ``-p`` values; raise ParameterError if bad.

    ``base``: the ``-f`` files already read and merged (``load_yaml_files``), used instead of ``files``
    (``smartops serve`` reads them once at start-up, not per alert)."""
    try:
        rb = catalog.get(runbook_id)
    except KeyError as e:
        raise ParameterError(str(e.args[0])) from None
    if not rb.path.exists():
        raise ParameterError(f"runbook {runbook_id!r} has no notebook at {rb.path}")
    defaults = notebook_parameters(rb.path)
    from_files = copy.deepcopy(dict(base)) if base is not None else load_yaml_files(files)
    config = {k: from_files.pop(k) for k in CONFIG_SECTIONS if k in from_files}
    notify.targets(config)  # a malformed notify: section is bad input, found before anything runs
    # A shared parameters file may hold keys for other runbooks; a key no runbook knows is an error.
    foreign = set(from_files) - set(defaults)
    if foreign:
        unknown = foreign - all_known_parameters()
        if unknown:
            raise ParameterError(f"unknown parameter {sorted(unknown)[0]!r} in parameters file (no runbook knows it)")
    values = {k: v for k, v in from_files.items() if k in defaults}
    cli = dict(cli or {})
    check_types(cli, defaults)
    values.update(cli)
    check_types(values, defaults)
    check_values({**defaults, **values}, actions=rb.actions)
    try:
        response.contacts(config.get("contacts"))
    except (ValueError, TypeError) as e:
        raise ParameterError(f"parameters file: {e}") from None
    return Prepared(rb, values, config)


def kernel_env(prep: Prepared, state_file: Path) -> dict[str, str]:
    """What the kernel gets besides our environment: the state file, headless mode, the contacts."""
    return {STATE_ENV: str(state_file), approvals.HEADLESS_ENV: "1",
            response.CONTACTS_ENV: json.dumps(response.contacts(prep.config.get("contacts")))}


def secrets_of(values: Mapping[str, Any]) -> list[str]:
    """The secrets the kernel saw in these parameters (see :func:`redact.secrets_in`)."""
    return redact.secrets_in(values)


def _kernel_manager(kernel_name: str, env: dict[str, str], folder: str):
    """An (unstarted) async kernel manager whose kernel gets ``env``, talking over IPC files.

    It must be an *async* manager: with a blocking one, nbclient waits on a blocking socket read
    and never notices that the kernel died (the hang papermill users report).
    """
    from jupyter_client.manager import AsyncKernelManager

    class _EnvKernelManager(AsyncKernelManager):
        refused: str | None = None  # set when the run is interrupted: no kernel starts on it again

        async def start_kernel(self, **kw):  # nbclient calls this when it starts the kernel
            if self.refused:
                raise RuntimeError(self.refused)
            kw["env"] = {**kw.get("env", {}), **env}
            return await super().start_kernel(**kw)

    km = _EnvKernelManager(kernel_name=kernel_name, transport="ipc",
                           connection_file=os.path.join(folder, "kernel.json"))
    km.ip = os.path.join(folder, "kernel-ipc")  # IPC socket files live in the run's private folder
    return km


def execute(prep: Prepared, archive: Path, *, progress: bool = True, cell_timeout: int = 600,
            start_timeout: int = 60, kernel=None) -> Result:
    """Run the notebook and write the record. Never raises for a failing notebook: see status.

    ``kernel`` is a leased :class:`~smartops_nb.kernels.WarmKernel` (started and warmed ahead, its
    state file chosen when it started); without one, or if its kernel name does not fit, a fresh
    kernel is started. Either way the record has the same form. The kernel is shut down after.
    A leased kernel that stopped answering is restarted in place (it stays the caller's to
    interrupt); once interrupted (:meth:`~smartops_nb.kernels.WarmKernel.interrupt`), at any time,
    no kernel starts on it again and the record says so.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    rb = prep.runbook
    started = utcnow()
    nb_in = nbformat.read(rb.path, as_version=4)
    kernel_name = notebook_kernel_name(nb_in)
    error: str | None = None
    with tempfile.TemporaryDirectory(prefix="smartops-run-") as tmp:
        state_file = Path(tmp) / "state.json"
        out_path = Path(tmp) / "executed.ipynb"
        if kernel is not None and kernel.kernel_name != kernel_name:
            log.warning("warm kernel is %s, %s needs %s: running cold", kernel.kernel_name, rb.id, kernel_name)
            kernel = None
        if kernel is not None:  # started ahead: the run's environment goes in by a silent, history-less cell
            try:
                kernel.set_env(kernel_env(prep, kernel.state_file))
            except Exception as e:
                # not a cold kernel of our own instead: the caller could not interrupt that one
                log.warning("leased kernel unusable (%s): restarting it", e)
                try:
                    kernel.restart(start_timeout)
                    kernel.set_env(kernel_env(prep, kernel.state_file))
                except Exception as e2:
                    error = f"the kernel did not start: {type(e2).__name__}: {e2}"
        if kernel is not None:  # nbclient uses a started km's kernel as it is
            km, state_file = kernel.km, kernel.state_file
        else:
            env = {**os.environ, **kernel_env(prep, state_file)}
            km = _kernel_manager(kernel_name, env, tmp)
        try:
            if error is None:
                log.info("running %s (%s)", rb.id, rb.notebook)
                papermill.execute_notebook(
                    str(rb.path), str(out_path), parameters=prep.parameters, km=km, kernel_name=kernel_name,
                    progress_bar=progress, request_save_on_cell_execute=True, execution_timeout=cell_timeout,
                    start_timeout=start_timeout, cwd=str(rb.path.parent),
                )
        except PapermillExecutionError as e:
            error = f"cell {e.exec_count} raised {e.ename}: {e.evalue}"
        except Exception as e:  # DeadKernelError, CellTimeoutError, kernel start failures...
            error = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else 'kernel died'}"
        finally:
            if kernel is not None and kernel.interrupted:
                error = f"interrupted: {kernel.interrupted}"
            _shutdown(km)
        nb = nbformat.read(out_path, as_version=4) if out_path.exists() else nb_in
        summary = _load_state(state_file)
    finished = utcnow()
    reached_end = summary is not None and summary.get("status") == "completed"
    if summary is None:  # the kernel died before the run began: build the frame from what we know
        summary = _empty_summary(rb, prep.parameters, started)
    summary["finished_at"] = summary.get("finished_at") or iso(finished)
    if error:
        summary["status"] = "failed"
        summary["error"] = redact.scrub(error)
        summary.setdefault("timeline", []).append({"at": iso(finished), "event": f"run failed: {summary['error']}"})
        log.error("%s failed: %s", rb.id, summary["error"])
    else:
        summary["status"] = "completed" if reached_end else "failed"
    if not error and not reached_end:
        summary["error"] = "the notebook finished without reaching run.finish()"
    secrets = secrets_of({**notebook_parameters(rb.path), **prep.parameters})
    path, stored = store(nb, summary, archive, secrets=secrets, add_cell=not reached_end)
    log.info("record written: %s", path)
    result = Result(path, stored)
    # after the write: the message names the record, and a record is written once (see notify.py)
    result.notifications = notify.after_run(prep.config, result.summary, path, archive)
    return result


def store(nb: nbformat.NotebookNode, summary: dict[str, Any], archive: Path, *, secrets: Iterable[str] = (),
          add_cell: bool = False) -> tuple[Path, dict[str, Any]]:
    """Summary + executed notebook → scrubbed record in the archive; return its path and stored summary.

    The one way a record is written, for headless runs and for runs saved from JupyterLab
    (:func:`smartops_nb.interactive.save_record`). ``add_cell``: the notebook did not show the
    summary itself (it did not reach ``run.finish()``), so append it as a last cell.
    """
    record.attach_summary(nb, summary, add_cell=add_cell)
    nb = record.scrub_notebook(nb, list(secrets))
    path = record_archive.write_record(nb, summary, archive)  # the record and its index entry
    return path, nb.metadata["smartops"]


def _load_state(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _empty_summary(rb: catalog.Runbook, params: Mapping[str, Any], started) -> dict[str, Any]:
    return {
        "schema": 1, "runbook": rb.id, "title": rb.title, "severity": params.get("severity") or rb.severity,
        "environment": params.get("environment", "unspecified"), "incident_id": params.get("incident_id", ""),
        "detected_at": params.get("detected_at") or iso(started), "started_at": iso(started), "finished_at": None,
        "status": "failed", "mode": params.get("mode", "investigate"), "operator": params.get("operator", ""),
        "diagnosis": {"confirmed": False, "causes": [], "summary": "no diagnosis reached: the run did not start"},
        "findings": [], "actions": [], "timeline": [{"at": iso(started), "event": "run started"}],
        "parameters": redact.scrub_obj({k: redact.mask_url(v) if isinstance(v, str) else v
                                        for k, v in params.items()}),
    }
