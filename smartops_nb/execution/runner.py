"""Execute a runbook notebook headless with papermill, on a fresh or a warm kernel.

The kernel writes the run's summary to a state file after every step (``STATE_ENV``), so a kernel
that dies mid-run still leaves its findings: :func:`execute` returns the executed notebook with that
summary, marked ``failed`` with the reason when the notebook did not reach ``run.finish()``. It
writes nothing: :func:`smartops_nb.execution.flow.investigate` stores the record and notifies.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from smartops_nb import catalog, redact, response
from smartops_nb.contract import CONTACTS_ENV, HEADLESS_ENV, LESSONS_ENV, RECORD_SCHEMA, STATE_ENV
from smartops_nb.params import iso, utcnow
from smartops_nb.support.reasons import one_line

from .kernels import kernel_manager, release
from .prepare import Prepared

if TYPE_CHECKING:  # nbformat costs ~1.6 s of CPU to import (jsonschema's rfc3987-syntax grammar): only a run
    import nbformat  # that failed before papermill returned reads a notebook with it, and imports it then

log = logging.getLogger("smartops.runner")


@dataclass
class Executed:
    """An executed notebook and its run's summary, not yet a record."""

    nb: "nbformat.NotebookNode"
    summary: dict[str, Any]
    reached_end: bool                                       # the notebook showed its own summary cell
    secrets: list[str] = field(default_factory=list, repr=False)  # what the record must not contain


def notebook_kernel_name(nb: "nbformat.NotebookNode | Path") -> str:
    """The kernel a runbook notebook asks for (its kernelspec name; python3 if it names none).

    From a path, the JSON is read without nbformat's schema validation (~50 ms a notebook, twice per
    served run: choosing the kernel, then running): papermill reads and validates it for the run."""
    if isinstance(nb, (str, os.PathLike)):
        nb = json.loads(Path(nb).read_text(encoding="utf-8"))
    return (nb.get("metadata", {}).get("kernelspec") or {}).get("name", "python3")


def kernel_env(prep: Prepared, state_file: Path) -> dict[str, str]:
    """What the kernel gets besides our environment: the state file, headless mode, the contacts, the
    runbook's lessons from earlier incidents."""
    return {STATE_ENV: str(state_file), HEADLESS_ENV: "1",
            CONTACTS_ENV: json.dumps(response.contacts(prep.config.get("contacts"))),
            LESSONS_ENV: json.dumps(prep.lessons)}


def execute(prep: Prepared, *, progress: bool = True, cell_timeout: int = 600, start_timeout: int = 60,
            kernel=None) -> Executed:
    """Run the notebook; return it with the run's summary. Never raises for a failing notebook: see status.

    ``kernel`` is a leased :class:`~smartops_nb.execution.kernels.WarmKernel` (started and warmed ahead, its
    state file chosen when it started); without one, or if its kernel name does not fit, a fresh
    kernel is started. Either way the record has the same form. The kernel is shut down after.
    A leased kernel that stopped answering is restarted in place (it stays the caller's to
    end); once ended (:meth:`~smartops_nb.execution.kernels.WarmKernel.end`), at any time,
    no kernel starts on it again and the record says so.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    rb = prep.runbook
    started = utcnow()
    kernel_name = notebook_kernel_name(rb.path)
    error: str | None = None
    executed = None
    runs: list = []  # papermill's execution manager of this run, for the notebook so far (see in_memory_engine)
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
            km = kernel_manager(kernel_name, env, tmp)
        try:
            if error is None:
                log.info("running %s (%s)", rb.id, rb.notebook)
                executed = papermill.execute_notebook(
                    str(rb.path), str(out_path), parameters=prep.parameters, km=km, kernel_name=kernel_name,
                    engine_name=in_memory_engine(), smartops_runs=runs,
                    progress_bar=progress, request_save_on_cell_execute=False, execution_timeout=cell_timeout,
                    start_timeout=start_timeout, cwd=str(rb.path.parent),
                )
        except PapermillExecutionError as e:
            error = f"cell {e.exec_count} raised {e.ename}: {e.evalue}"
        except Exception as e:  # DeadKernelError, CellTimeoutError, kernel start failures...
            error = one_line(e, default="kernel died")
        finally:
            if kernel is not None and kernel.interrupted:
                error = f"interrupted: {kernel.interrupted}"
            release(km)  # this thread ran it: its sockets are released here
        # papermill returns the executed notebook; after a failing cell, the one it wrote with its error
        # marker; after a dead kernel or a timeout, the notebook so far (papermill wrote nothing)
        if executed is not None:
            nb = executed
        elif runs and not out_path.exists():
            nb = runs[0].nb
        else:
            import nbformat

            nb = nbformat.read(out_path if out_path.exists() else rb.path, as_version=4)
        summary = _load_state(state_file)
    finished = utcnow()
    reached_end = summary is not None and summary.get("status") == "completed"
    if summary is None:  # the kernel died before the run began: build the frame from what we know
        summary = _empty_summary(rb, prep.values, started)
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
    return Executed(nb, summary, reached_end, redact.secrets_in(prep.values))


ENGINE = "smartops-in-memory"


@functools.cache
def in_memory_engine() -> str:
    """papermill's nbclient engine, keeping the executed notebook in memory: it writes nothing during
    the run (papermill's execution manager saves the whole notebook, charts included, when the run
    starts, after every cell and when it ends, each an nbformat serialization: 46 writes for
    db-pool-exhausted were a fifth of a warm run, and the three left at start and end 0.1 s of the
    0.66 s that remained; profiled). Nobody reads the notebook during a run (the findings so far are in
    the state file), and :meth:`smartops_nb.records.archive.Archive.store` writes the record once.

    ``smartops_runs``: a list the engine appends papermill's execution manager to when the run starts,
    so that a run ended by a dead kernel or a timeout (papermill raises, returning nothing) still
    gives the notebook so far. Returns the engine's name for
    ``papermill.execute_notebook(engine_name=...)``; registered on first use."""
    from papermill.engines import NBClientEngine, papermill_engines

    class InMemory(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, smartops_runs=None, **kwargs):
            if smartops_runs is not None:
                smartops_runs.append(nb_man)
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    papermill_engines.register(ENGINE, InMemory)
    return ENGINE


def _load_state(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _empty_summary(rb: catalog.Runbook, params: Mapping[str, Any], started) -> dict[str, Any]:
    """The record's frame when the kernel died before the run began (``params``: declared defaults applied)."""
    return {
        "schema": RECORD_SCHEMA, "runbook": rb.id, "title": rb.title, "severity": params["severity"] or rb.severity,
        "environment": params["environment"], "incident_id": params["incident_id"],
        "detected_at": params["detected_at"] or iso(started), "started_at": iso(started), "finished_at": None,
        "status": "failed", "mode": params["mode"], "operator": params["operator"],
        "diagnosis": {"confirmed": False, "causes": [], "summary": "no diagnosis reached: the run did not start"},
        "findings": [], "actions": [], "timeline": [{"at": iso(started), "event": "run started"}],
        "parameters": redact.scrub_obj({k: redact.mask_url(v) if isinstance(v, str) else v
                                        for k, v in params.items()}),
    }
