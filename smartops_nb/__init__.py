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
from importlib import import_module

# The notebook-facing API, imported on first use: the CLI imports this package too, and
# nbformat (via interactive) alone costs about a second of start-up.
_EXPORTS = {
    "begin": "kernel.run", "Run": "kernel.run", "Finding": "findings", "Diagnosis": "findings",
    "show_table": "kernel.display", "show_message": "kernel.display", "save_record": "kernel.interactive",
}
__all__ = list(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
