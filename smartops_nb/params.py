"""Runbook parameters: the contract, how they are merged, checked and resolved.

Parameters reach a runbook the way papermill passes them (YAML files with ``-f``, later ones
winning, then ``-p NAME VALUE``). The names below are a stable contract shared by every runbook;
a runbook adds its own in its ``parameters`` cell. A value ``env:NAME`` is resolved from the
environment *inside the kernel* (:func:`resolve_env`), so secrets never have to be parameters.
"""
from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml


class ParameterError(ValueError):
    """Bad input: the message is one line naming the parameter and the problem."""


#: Parameters every runbook understands, with the seed's defaults.
COMMON_DEFAULTS: dict[str, Any] = {
    "environment": "unspecified",
    "platform": "docker",
    "api_url": "http://localhost:8000",
    "postgres_dsn": "postgresql://postgres@localhost:5432/smartamazon",
    "redis_url": "redis://localhost:6379/0",
    "docker_host": "",
    "api_container": "smartamazon-api-prod",
    "db_container": "smartamazon-db",
    "redis_container": "smartamazon-redis",
    "api_log_path": "",
    "kube_context": "",
    "kube_namespace": "default",
    "api_deployment": "smartamazon-backend",
    "mode": "investigate",
    "approved_actions": [],
    "dry_run": False,
    "severity": "",
    "incident_id": "",
    "detected_at": "",
    "operator": "",
}

PLATFORMS = ("docker", "kubernetes")
MODES = ("investigate", "mitigate")
SEVERITIES = ("P1", "P2", "P3", "P4")


def load_yaml_files(paths: Iterable[str | os.PathLike]) -> dict[str, Any]:
    """Merge YAML parameter files, later files winning (as ``papermill -f`` does).

    Top-level sections that are not runbook parameters (``contacts``, ``notify``) are kept as
    they are; callers decide what to pass on.
    """
    merged: dict[str, Any] = {}
    for path in paths:
        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except FileNotFoundError:
            raise ParameterError(f"parameters file not found: {p}") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ParameterError(f"parameters file {p} is not valid YAML{where}: {problem}") from None
        except OSError as e:
            raise ParameterError(f"parameters file {p} cannot be read: {e.strerror}") from None
        if not isinstance(data, dict):
            raise ParameterError(f"parameters file {p} must be a mapping of NAME: VALUE, got {type(data).__name__}")
        merged.update(data)
    return merged


def parse_cli_value(raw: str) -> Any:
    """Type a ``-p NAME VALUE`` string the way papermill does (YAML scalars and lists)."""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    if isinstance(value, (dt.date, dt.datetime)):
        return raw  # keep timestamps as the ISO text the user typed
    return raw if value is None and raw not in ("null", "None", "~") else value


_TYPE_NAMES = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}


def check_types(values: Mapping[str, Any], defaults: Mapping[str, Any]) -> None:
    """Raise ParameterError for a name the runbook does not know or a value of the wrong type."""
    for name, value in values.items():
        if name not in defaults:
            known = ", ".join(sorted(defaults))
            raise ParameterError(f"unknown parameter {name!r} (this runbook knows: {known})")
        default = defaults[name]
        if default is None or value is None:
            continue
        want = type(default)
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            continue
        if want is list and isinstance(value, str):
            continue  # "a,b" is accepted for lists
        if isinstance(value, bool) != (want is bool) or not isinstance(value, want):
            raise ParameterError(
                f"parameter {name!r} must be {_TYPE_NAMES.get(want, want.__name__)}, "
                f"got {type(value).__name__} {value!r}"
            )


def check_values(values: Mapping[str, Any], *, actions: Iterable[str] = ()) -> None:
    """Semantic checks shared by every runbook (choices, timestamps, action names)."""
    if values.get("platform") not in (None, *PLATFORMS):
        raise ParameterError(f"parameter 'platform' must be one of {', '.join(PLATFORMS)}, got {values['platform']!r}")
    if values.get("mode") not in (None, *MODES):
        raise ParameterError(f"parameter 'mode' must be one of {', '.join(MODES)}, got {values['mode']!r}")
    sev = values.get("severity")
    if sev not in (None, "") and sev not in SEVERITIES:
        raise ParameterError(f"parameter 'severity' must be one of {', '.join(SEVERITIES)}, got {sev!r}")
    detected = values.get("detected_at")
    if detected:
        parse_time(detected, name="detected_at")
    known = set(actions)
    if known:
        for action in as_list(values.get("approved_actions", [])):
            if action not in known:
                raise ParameterError(
                    f"approved action {action!r} is not an action of this runbook (known: {', '.join(sorted(known))})"
                )


def as_list(value: Any) -> list[str]:
    if value in (None, ""):
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def parse_time(value: str, *, name: str = "time") -> dt.datetime:
    """Parse ISO 8601 (``Z`` accepted) to an aware UTC datetime; naive times are taken as UTC."""
    try:
        t = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ParameterError(f"parameter {name!r} must be an ISO 8601 time, got {value!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.astimezone(dt.timezone.utc)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


ENV_PREFIX = "env:"


def resolve_env(value: Any, *, name: str = "") -> Any:
    """Resolve ``env:NAME`` to the environment variable NAME (inside the kernel, never earlier)."""
    if isinstance(value, str) and value.startswith(ENV_PREFIX):
        var = value[len(ENV_PREFIX):]
        if var not in os.environ:
            raise ParameterError(f"parameter {name or '?'!r} refers to environment variable {var} which is not set")
        return os.environ[var]
    return value


class Params:
    """Read-only view of a runbook's parameters, with ``env:`` references resolved on access.

    Attribute access returns the resolved value; :meth:`raw` keeps the reference (what the record
    shows). Resolved secret values are registered with :mod:`smartops_nb.redact`.
    """

    def __init__(self, values: Mapping[str, Any]):
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, name: str) -> Any:
        try:
            value = self._values[name]
        except KeyError:
            raise AttributeError(f"runbook has no parameter {name!r}") from None
        resolved = resolve_env(value, name=name)
        if resolved is not value:
            from . import redact

            redact.register_secret(resolved)
        if name == "approved_actions":
            return as_list(resolved)
        return resolved

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("runbook parameters are read-only")

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self, name) if name in self._values else default

    def raw(self) -> dict[str, Any]:
        return dict(self._values)

    def __contains__(self, name: str) -> bool:
        return name in self._values


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    type: str
    default: Any
    help: str = ""
