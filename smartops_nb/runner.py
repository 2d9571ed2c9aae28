"""Execute a runbook headless with papermill and turn the result into an incident record.

:func:`prepare` checks everything before anything runs (bad input → :class:`ParameterError`,
nothing executed). :func:`execute` runs the notebook in a fresh kernel, lifts the run's summary
(written by the kernel to a state file after every step, so it survives a dying kernel) into
``metadata["smartops"]``, scrubs secrets and writes the record.
"""
from __future__ import annotations

import ast
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import nbformat

from . import catalog, record, redact
from .params import ParameterError, check_types, check_values, iso, load_yaml_files, utcnow
from .run import STATE_ENV

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


def all_known_parameters() -> set[str]:
    names: set[str] = set()
    for rb in catalog.available():
        names |= set(notebook_parameters(rb.path))
    return names


def prepare(runbook_id: str, files: Iterable[str] = (), cli: Mapping[str, Any] | None = None) -> Prepared:
    """Resolve the runbook and merge ``-f`` files then ``-p`` values; raise ParameterError if bad."""
    try:
        rb = catalog.get(runbook_id)
    except KeyError as e:
        raise ParameterError(str(e.args[0])) from None
    if not rb.path.exists():
        raise ParameterError(f"runbook {runbook_id!r} has no notebook at {rb.path}")
    defaults = notebook_parameters(rb.path)
    from_files = load_yaml_files(files)
    config = {k: from_files.pop(k) for k in CONFIG_SECTIONS if k in from_files}
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
    return Prepared(rb, values, config)


def _kernel_manager(kernel_name: str, env: dict[str, str], folder: str):
    """An (unstarted) async kernel manager whose kernel gets ``env``, talking over IPC files.

    It must be an *async* manager: with a blocking one, nbclient waits on a blocking socket read
    and never notices that the kernel died (the hang papermill users report).
    """
    from jupyter_client.manager import AsyncKernelManager

    class _EnvKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw):  # nbclient calls this when it starts the kernel
            kw["env"] = {**kw.get("env", {}), **env}
            return await super().start_kernel(**kw)

    km = _EnvKernelManager(kernel_name=kernel_name, transport="ipc",
                           connection_file=os.path.join(folder, "kernel.json"))
    km.ip = os.path.join(folder, "kernel-ipc")  # IPC socket files live in the run's private folder
    return km


def execute(prep: Prepared, archive: Path, *, progress: bool = True, cell_timeout: int = 600,
            start_timeout: int = 60) -> Result:
    """Run the notebook and write the record. Never raises for a failing notebook: see status."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    rb = prep.runbook
    started = utcnow()
    nb_in = nbformat.read(rb.path, as_version=4)
    kernel_name = nb_in.metadata.get("kernelspec", {}).get("name", "python3")
    error: str | None = None
    with tempfile.TemporaryDirectory(prefix="smartops-run-") as tmp:
        state_file = Path(tmp) / "state.json"
        out_path = Path(tmp) / "executed.ipynb"
        env = {**os.environ, STATE_ENV: str(state_file)}
        km = _kernel_manager(kernel_name, env, tmp)
        try:
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
    secrets = [s for s in (redact.url_password(v) for v in prep.parameters.values() if isinstance(v, str)) if s]
    record.attach_summary(nb, summary, add_cell=not reached_end)
    nb = record.scrub_notebook(nb, secrets)
    path = record.write_record(nb, summary, archive)
    log.info("record written: %s", path)
    return Result(path, nb.metadata["smartops"])


def _shutdown(km) -> None:
    """Stop the kernel we own (nbclient leaves a kernel manager it was given running)."""
    from jupyter_core.utils import run_sync

    try:
        if km.has_kernel:
            run_sync(km.shutdown_kernel)(now=True)
    except Exception as e:  # already dead
        log.debug("kernel shutdown: %s", e)


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
