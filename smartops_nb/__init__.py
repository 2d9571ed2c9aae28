"""SmartOps: the SmartAmazon incident-response runbook as parameterized Jupyter notebooks.

Notebooks import this package and read like the runbook page::

    run = smartops_nb.begin("db-pool-exhausted", globals())
    with run.step("login", "Log in to PostgreSQL"):
        run.finding(db_pool.check_login(run.postgres().login()))
    ...
    run.finish()

Layers, one direction: parameters -> probes (read a system) -> checks (data -> Finding) ->
diagnosis (findings -> cause codes) -> actions (gated, audited) -> record.
"""
from .display import show_message, show_table
from .findings import Diagnosis, Finding
from .interactive import save_record
from .run import Run, begin

__all__ = ["begin", "Run", "Finding", "Diagnosis", "show_table", "show_message", "save_record"]
__version__ = "0.1.0"
