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
    exists: bool | None = None       # the engine still has the image (None: cannot tell, e.g. a cluster's nodes)


@dataclass
class Release:
    """What the deploy tool meant the workload to run, and whether the engine can run it.

    Read from the deploy tool's own record: a Compose project's file, a Kubernetes pod spec and
    its container statuses; plain Docker keeps none, so there it is the ``release_image`` the
    caller names plus what the engine's events say happened to the container.
    """

    image: str = ""                  # the intended image ("" when no record names one)
    source: str = ""                 # where that was read, for the record
    available: bool | None = None    # the engine has it / can pull it (None: cannot tell)
    engine_images: list[str] = field(default_factory=list)   # the engine's images of that repository
    error: str = ""                  # the engine's error getting or creating it, when it kept one
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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

    @abc.abstractmethod
    def release(self, workload: str, intended: str = "", window_s: float = 3600.0) -> Release:
        """What the last deploy meant ``workload`` to run (:class:`Release`): the deploy tool's own
        record where the platform keeps one, else ``intended``; whether the engine has that image,
        and the engine's error. ``window_s``: how far back the engine's events are read."""

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
