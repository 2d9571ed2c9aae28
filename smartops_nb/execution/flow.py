"""Investigate: the flow from a prepared run to a stored, announced incident record.

``investigate()`` = execute (papermill, :mod:`.runner`) → store (:meth:`smartops_nb.records.archive.Archive.store`)
→ notify (:mod:`smartops_nb.alerts.notify`) → the post-incident checklist
(:mod:`smartops_nb.postincident.checklist`). ``smartops run`` and ``smartops serve`` call this one
flow; each step is a service that knows nothing of the others.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smartops_nb.alerts import notify
from smartops_nb.postincident import checklist
from smartops_nb.contract import EXIT_FAILED, EXIT_OK
from smartops_nb.records.storage import name_in
from smartops_nb.records.archive import Archive

from . import kernels, runner
from .prepare import Prepared

log = logging.getLogger("smartops.flow")


@dataclass
class Result:
    record: Path | str   # a path in a folder archive, an s3:// URL in a shared one
    summary: dict[str, Any]
    notifications: list[dict[str, Any]] = field(default_factory=list)  # outcomes, see notify.py
    checklist: list[dict[str, Any]] = field(default_factory=list)  # post-incident items, see postincident/

    @property
    def name(self) -> str:
        """The record's name in its archive (the last part of its path or URL)."""
        return name_in(self.record)

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.summary.get("status") == "completed" else EXIT_FAILED


def investigate(prep: Prepared, archive: Archive, *, progress: bool = True, cell_timeout: int = 600,
                start_timeout: int = 60, kernel=None, annotate: dict[str, Any] | None = None) -> Result:
    """Run the runbook, write its record, then send its notifications; return the record.

    ``kernel``: a leased warm kernel (see :func:`runner.execute`). Raises
    :class:`~smartops_nb.records.record.RecordWriteError` only when the record cannot be written.
    ``annotate``: more top-level summary fields (a queued run's job and attempts).
    """
    prep.lessons = checklist.lessons_for(archive, prep.runbook.id)  # shown in the opening cell
    done = runner.execute(prep, progress=progress, cell_timeout=cell_timeout, start_timeout=start_timeout,
                          kernel=kernel)
    if annotate:
        done.summary.update(annotate)
    path, stored = archive.store(done.nb, done.summary, secrets=done.secrets, add_cell=not done.reached_end)
    log.info("record written: %s", path)
    result = Result(path, stored)
    # after the write: the message names the record, and a record is written once (see notify.py)
    result.notifications = notify.after_run(prep.config, result.summary, path, archive)
    result.checklist = checklist.after_run(prep.config, result.summary, path, archive, result.notifications)
    return result


def investigate_on_pool(prep: Prepared, archive: Archive, pool: kernels.KernelPool, *, incident: str,
                        handle: kernels.RunHandle | None = None, lease_wait: float = 5.0, cell_timeout: int = 600,
                        deadline: float | None = None, annotate: dict[str, Any] | None = None) -> Result | None:
    """One alert's run as ``serve`` and the queue's workers do it: a kernel of its own (warm if one is
    ready), reachable from outside through ``handle`` (a shutdown ends it there), a wall-clock ``deadline``,
    the record, and everything the kernel held released after, by this thread. Returns None (logged) only
    when no record could be written."""
    rb = prep.runbook
    t0 = time.monotonic()
    handle = handle or kernels.RunHandle()
    kernel = None
    try:
        kernel, how = kernel_for_run(pool, rb.path, lease_wait=lease_wait, what=f"{rb.id} ({incident})")
        handle.attach(kernel)
        log.info("run started: %s for incident %s (%s kernel)", rb.id, incident, how)
        with handle.deadline(deadline):
            result = investigate(prep, archive, progress=False, cell_timeout=cell_timeout, kernel=kernel,
                                 annotate=annotate)
        diag = result.summary["diagnosis"]
        log.info("run finished: %s for incident %s in %.1f s: %s, %s; record %s", rb.id, incident,
                 time.monotonic() - t0, result.summary["status"],
                 "CONFIRMED " + ",".join(diag["causes"]) if diag["confirmed"] else "not confirmed", result.record)
        return result
    except Exception as e:  # record write failures and the like: log, keep serving
        log.exception("run of %s for incident %s failed without a record: %s", rb.id, incident, e)
        return None
    finally:
        if kernel is not None:
            kernel.close()
        # jupyter_client's blocking calls made this thread an event loop; a Procrastinate job runs in a
        # fresh copy of the context each time, so every job would make (and leave) another: close it
        kernels.close_thread_loop()


def kernel_for_run(pool: kernels.KernelPool, notebook: Path, *, lease_wait: float, what: str = "") -> tuple[kernels.WarmKernel | None, str]:
    """A warm kernel from the pool, else one started for this run (no warm-up): always a WarmKernel,
    so that a shutdown or a deadline can end the run. (None only if no kernel starts at all: the run
    then tries cold and records why it failed.) Returns the kernel and "warm" or "cold"."""
    name = runner.notebook_kernel_name(notebook)
    if pool.size and pool.kernel_name == name:
        kernel = pool.get(lease_wait)
        if kernel is not None:
            return kernel, "warm"
    try:
        # forked from the template when the pool forks (already loaded: about a warm kernel, unwarmed)
        return kernels.start_warm_kernel(name, cwd=notebook.parent, warmup="", start=pool.start_method), "cold"
    except Exception as e:
        log.error("no kernel for %s: %s", what or notebook.name, e)
        return None, "cold"
