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

from .contract import ParameterError
from .redact import ENV_PREFIX, register_secret, resolve_env  # noqa: F401  (ENV_PREFIX: re-exported)
from smartops_nb.support.reasons import one_line

_TYPE_NAMES = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}


@dataclass(frozen=True)
class Param:
    """One runbook parameter: declared once, written into the notebooks' ``parameters`` cells in
    papermill's annotated form (``tools/notebook_parameters.py``) and checked by :func:`check_types`."""

    name: str
    type: type
    default: Any
    help: str

    def __post_init__(self) -> None:
        if self.type not in _TYPE_NAMES or not isinstance(self.default, self.type):
            raise TypeError(f"parameter {self.name}: default {self.default!r} is not a {self.type.__name__}")
        if "=" in self.help or "\n" in self.help:  # papermill's annotation parser drops such a line
            raise ValueError(f"parameter {self.name}: its help must be one line without '='")

    def with_default(self, default: Any, help: str | None = None) -> "Param":
        return Param(self.name, self.type, default, help or self.help)

    def line(self) -> str:
        """``idle_minutes: float = 5.0  # idle age that counts as a leak`` (what papermill reads)."""
        # papermill's parser stops a value at '=', so inside a literal's strings it is written as \\x3d
        value = repr(self.default).replace("=", "\\x3d")
        return f"{self.name}: {self.type.__name__} = {value}  # {self.help}"


def _p(name: str, typ: type, default: Any, help: str) -> Param:
    return Param(name, typ, default, help)


#: Parameters every runbook understands, with the seed's defaults (a runbook may change a default).
COMMON: tuple[Param, ...] = (
    _p("environment", str, "unspecified", "names the record: <time>_<runbook>_<environment>.ipynb"),
    _p("platform", str, "docker", "docker | compose | kubernetes: where the API, database and cache run"),
    _p("api_url", str, "http://localhost:8000", "base URL of the API (/health, /metrics)"),
    _p("postgres_dsn", str, "postgresql://postgres@localhost:5432/smartamazon",
       "read-only monitoring role; env:NAME reads it from the environment inside the kernel"),
    _p("postgres_admin_dsn", str, "", "a role that still logs in when every ordinary slot is taken"),
    _p("redis_url", str, "redis://localhost:6379/0", "Redis URL (env:NAME for one with a password)"),
    _p("docker_host", str, "", "Docker API URL (unix:///..., tcp://...), empty: DOCKER_HOST"),
    _p("api_container", str, "smartamazon-api-prod", "the API's container"),
    _p("db_container", str, "smartamazon-db", "PostgreSQL's container"),
    _p("redis_container", str, "smartamazon-redis", "Redis's container"),
    _p("compose_project", str, "", "platform compose: the Compose project (docker-compose -p NAME)"),
    _p("api_service", str, "backend", "platform compose: the API's Compose service"),
    _p("db_service", str, "postgres", "platform compose: PostgreSQL's Compose service"),
    _p("redis_service", str, "redis", "platform compose: Redis's Compose service"),
    _p("api_log_path", str, "", "read the API's log from this file instead of the platform's logs"),
    _p("kube_context", str, "", "kubeconfig context (empty: the current one)"),
    _p("kube_namespace", str, "default", "Kubernetes namespace of the API"),
    _p("api_deployment", str, "smartamazon-backend", "the API's Kubernetes deployment"),
    _p("mode", str, "investigate", "investigate (changes nothing) | mitigate"),
    _p("approved_actions", list, [], "actions allowed to run in mitigate mode"),
    _p("dry_run", bool, False, "mitigate mode: show what approved actions would do, change nothing"),
    _p("severity", str, "", "P1..P4, empty: the runbook's own"),
    _p("incident_id", str, "", "runs of one incident share it (empty: <runbook>-<UTC time>)"),
    _p("detected_at", str, "", "ISO 8601 time the incident was detected (empty: when the run started)"),
    _p("operator", str, "", "who runs it (default: the OS user); recorded with every action"),
    _p("approval_expires_minutes", float, 0.0,
       "how long a recommended action's plan can be approved (0: the severity's response target)"),
    _p("plan_id", str, "", "set by smartops approve: this run carries out that plan and nothing else"),
    _p("plan_target", str, "", "set by smartops approve: the target the plan's evidence named"),
)
COMMON_DEFAULTS: dict[str, Any] = {p.name: p.default for p in COMMON}

#: Parameters several runbooks share (each runbook lists the ones it reads in the catalog).
SHARED: dict[str, Param] = {p.name: p for p in (
    _p("prometheus_url", str, "", "Prometheus HTTP API for history (empty: sample /metrics instead)"),
    _p("lookback", str, "30m", "history window before now (widened to show detected_at)"),
    _p("health_timeout_s", float, 5.0, "timeout of the /health request, seconds"),
    _p("log_lines", int, 100, "API log lines read"),
    _p("memory_warn_pct", float, 90.0, "memory use against its limit that is a warning, %"),
    _p("scale_replicas", int, 3, "scale-api target replicas"),
)}


def shared(name: str, default: Any = None, help: str | None = None) -> Param:
    p = SHARED[name]
    return p if default is None else p.with_default(default, help)


#: Top-level sections of a parameters file that configure SmartOps itself, not a runbook.
CONFIG_SECTIONS = ("contacts", "notify", "post_incident")

PLATFORMS = ("docker", "compose", "kubernetes")
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
            problem = getattr(e, "problem", None) or one_line(e, typed=False)
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
    if values.get("platform") == "compose" and not values.get("compose_project"):
        raise ParameterError("parameter 'compose_project' is required with platform compose (docker-compose -p NAME)")
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
            register_secret(resolved)
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

