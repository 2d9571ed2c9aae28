"""Prepare a runbook's run on the host: parameters merged, typed and checked before anything runs.

Parameters reach a runbook the way papermill passes them (YAML files with ``-f``, later ones
winning, then ``-p NAME VALUE``), checked against the runbook's one declaration
(:attr:`smartops_nb.catalog.Runbook.parameters`): unknown names and wrong types are bad input
(:class:`~smartops_nb.contract.ParameterError`, exit 2), found before a kernel starts.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from smartops_nb import catalog, response
from smartops_nb.alerts import notify
from smartops_nb.postincident import config as post_incident
from smartops_nb.params import CONFIG_SECTIONS, ParameterError, check_types, check_values, load_yaml_files


@dataclass
class Prepared:
    runbook: catalog.Runbook
    parameters: dict[str, Any]       # what papermill injects (only names the runbook declares)
    config: dict[str, Any]           # non-parameter sections of the parameters files
    lessons: list[dict[str, Any]] = field(default_factory=list)  # learned from earlier incidents (opening cell)

    @property
    def values(self) -> dict[str, Any]:
        """Every parameter as the run will see it: the declared defaults, then what was given."""
        return {**self.runbook.defaults(), **self.parameters}


def all_known_parameters() -> set[str]:
    """Every parameter name some runbook declares (a shared parameters file may hold any of them)."""
    return {name for rb in catalog.RUNBOOKS.values() for name in rb.parameters}


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
    defaults = rb.defaults()
    from_files = copy.deepcopy(dict(base)) if base is not None else load_yaml_files(files)
    config = {k: from_files.pop(k) for k in CONFIG_SECTIONS if k in from_files}
    notify.targets(config)  # a malformed notify: section is bad input, found before anything runs
    post_incident.load(config)  # so is a malformed post_incident: section
    # A shared parameters file may hold keys for other runbooks; a key no runbook knows is an error.
    unknown = set(from_files) - set(defaults) - all_known_parameters()
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
