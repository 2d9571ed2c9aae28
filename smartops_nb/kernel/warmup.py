"""What a warm kernel loads before its run: the scientific stack, SmartOps' notebook API, the drivers.

Called by the host's warm-up cell (``execution.kernels.WARMUP_CODE``) inside a new kernel, and by the
fork server's template (``execution.forkserver``) once, before it forks kernels: then a forked kernel
finds all of it loaded already. Nothing here opens a socket or starts a thread.
"""
from __future__ import annotations

import importlib
import io
import pkgutil

#: Packages whose every module a run may import (probes, checks, mitigations, platforms).
PACKAGES = ("smartops_nb.probes", "smartops_nb.checks", "smartops_nb.mitigations", "smartops_nb.platforms")


def load_modules() -> None:
    """Import what a run imports: pandas, matplotlib, the drivers the probes import at first use
    (psycopg alone: ~0.3 s), SmartOps' notebook API (lazy in the package: the CLI must start fast) and
    every probe, check, mitigation and platform (a recommended restart/scale connects to the platform:
    docker SDK ~0.1 s, 8 MiB; the Kubernetes client stays lazy inside its module)."""
    import matplotlib.pyplot  # noqa: F401
    import pandas  # noqa: F401
    import psycopg  # noqa: F401
    import redis  # noqa: F401

    import smartops_nb.kernel.approvals  # noqa: F401
    import smartops_nb.kernel.interactive  # noqa: F401
    import smartops_nb.kernel.plots  # noqa: F401
    import smartops_nb.kernel.run  # noqa: F401
    import smartops_nb.platforms  # noqa: F401

    for pkg in PACKAGES:
        for m in pkgutil.iter_modules(importlib.import_module(pkg).__path__):
            try:
                importlib.import_module(pkg + "." + m.name)
            except Exception:  # noqa: BLE001 - an optional driver missing: the run says so when it uses it
                pass


def _chart(fig) -> None:
    ax = fig.subplots()
    ax.barh(["a"], [1])
    ax.set_title("warm-up 0123456789")
    fig.savefig(io.BytesIO(), format="png", bbox_inches="tight")


def draw_once() -> None:
    """One chart through pyplot, thrown away: the kernel's backend (inline), the PNG writer's plugins and
    the font's glyphs load now, not in the run's first chart (profiled: ~0.1 s of a warm run)."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(2, 1))
    try:
        _chart(fig)
    finally:
        plt.close(fig)


#: Set by :func:`draw_without_backend` in the fork server's template: a forked kernel inherits it (and the
#: fonts, glyphs and PNG writer that chart loaded).
TEMPLATE_DREW = False


def draw_without_backend() -> None:
    """The same chart on a bare Figure (no pyplot, so no backend is chosen: the fork server's template,
    whose kernels pick the inline backend themselves): fonts and PNG writer loaded, shared by every fork."""
    global TEMPLATE_DREW
    from matplotlib.figure import Figure

    _chart(Figure(figsize=(2, 1)))
    TEMPLATE_DREW = True


#: The inline backend's names (matplotlib_inline's own test for "we are the backend").
INLINE = ("module://matplotlib_inline.backend_inline", "inline")


def select_backend() -> None:
    """pyplot's backend chosen now, as a first figure would, with IPython's inline hooks. Importing
    ``matplotlib_inline.backend_inline`` in a kernel installs those hooks; the fork server's template
    imported it with no shell to hook (importing it in each kernel copied ~1 MiB of pages), so here the
    same two public calls its import makes: ``activate_matplotlib`` and ``configure_inline_support``."""
    import matplotlib
    import matplotlib.pyplot as plt
    from IPython import get_ipython

    backend = matplotlib.get_backend()
    shell = get_ipython()
    if shell is None or backend not in INLINE:
        plt.switch_backend(backend)
        return
    from IPython.core.pylabtools import activate_matplotlib
    from matplotlib_inline.backend_inline import configure_inline_support

    activate_matplotlib(backend)
    configure_inline_support(shell, backend)


def warm() -> None:
    """A new kernel's warm-up: everything loaded and one chart drawn. A forked kernel only chooses its
    backend: its template loaded everything and drew the chart, and drawing it again copied ~7 MiB of the
    template's pages into each ready kernel. The price: a run's first chart draws what the warm-up drew
    (measured on a loaded machine, 5 forks each: 0.85 s median against 0.63 s after a drawn warm-up)."""
    if TEMPLATE_DREW:
        select_backend()
        return
    load_modules()
    draw_once()
