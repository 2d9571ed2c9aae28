"""The platform interface every driver implements, and the plain data it returns."""
from __future__ import annotations

import abc
from dataclasses import dataclass, field, asdict
from typing import Any


class PlatformError(RuntimeError):
    """The platform (engine, API server, workload) could not be reached or refused the call."""


@dataclass
class WorkloadState:
    """What a runbook needs to know about one workload (a container, or a deployment's pods)."""

    name: str
    exists: bool
    running: bool = False
    status: str = ""                 # engine's word: running, exited, CrashLoopBackOff, ImagePullBackOff...
    restarts: int = 0
    exit_code: int | None = None
    oom_killed: bool = False
    memory_usage_bytes: int | None = None
    memory_limit_bytes: int | None = None
    image: str = ""
    started_at: str | None = None
    replicas_desired: int | None = None
    replicas_ready: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ImageRevision:
    """One deployed version of a workload, newest first in :meth:`Platform.image_history`."""

    revision: str
    image: str
    created_at: str | None = None
    current: bool = False


class Platform(abc.ABC):
    """restart, scale, logs, state, image history, rollback: what the runbooks ask of a platform.

    Read methods never change anything. Write methods return a dict describing what was done
    (for the action log) and raise :class:`PlatformError` on failure. Every call has a timeout.
    """

    name: str = "abstract"

    @abc.abstractmethod
    def state(self, workload: str) -> WorkloadState: ...

    @abc.abstractmethod
    def logs(self, workload: str, tail: int = 100) -> list[str]: ...

    @abc.abstractmethod
    def environment(self, workload: str) -> dict[str, str]:
        """The workload's environment variables, as configured (callers mask secrets)."""

    @abc.abstractmethod
    def image_history(self, workload: str) -> list[ImageRevision]: ...

    @abc.abstractmethod
    def restart(self, workload: str) -> dict[str, Any]: ...

    @abc.abstractmethod
    def scale(self, workload: str, replicas: int) -> dict[str, Any]: ...

    @abc.abstractmethod
    def rollback_target(self, workload: str) -> ImageRevision | None:
        """The revision :meth:`rollback` would go back to now (None: nothing to roll back to).
        The one rule, read by the check, the action's preview and :meth:`rollback` itself."""

    @abc.abstractmethod
    def rollback(self, workload: str) -> dict[str, Any]: ...

    def cannot_act(self) -> str:
        """Why restart, scale and rollback cannot be carried out from here ("" when they can).
        Answered without I/O, when the actions are built: such an action is refused (recommended
        only, with this reason) instead of failing half-way."""
        return ""

    def disk_usage(self) -> dict[str, Any]:
        """The engine's `docker system df`; platforms without one raise PlatformError."""
        raise PlatformError(f"{self.name} has no engine disk usage")

    def prune(self, volumes: bool = False) -> dict[str, Any]:
        raise PlatformError(f"{self.name} cannot prune")
