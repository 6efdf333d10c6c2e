"""The one interface WakeDock drives containers through (Docker Engine now, Swarm next)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from wakedock.errors import DependencyUnavailable, InvalidInput, NotFound, PermissionDenied
from wakedock.services.spec import ServiceSpec


class RuntimeUnavailable(DependencyUnavailable):
    code = "docker_unavailable"


class ImageMissing(InvalidInput):
    status_code = 422
    code = "image_missing"


class ContainerNotFound(NotFound):
    code = "container_not_found"


class NotManaged(PermissionDenied):
    """A container neither created by WakeDock nor opted in with `wakedock.enable=true`."""

    code = "container_not_managed"


class State(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    STARTING = "starting"
    MISSING = "missing"


@dataclass(frozen=True)
class ContainerStatus:
    id: str
    name: str
    state: State
    # "healthy", "unhealthy", "starting", or None when the container has no healthcheck.
    health: str | None


class ContainerRuntime(Protocol):
    """What WakeDock needs from a container engine. Every method blocks: call it off the loop."""

    def create(self, spec: ServiceSpec, environment: Mapping[str, str]) -> str:
        """Create (not start) the hardened container of `spec`; returns its id."""
        ...

    def start(self, container_id: str) -> None: ...

    def stop(self, container_id: str, *, pause: bool = False) -> None: ...

    def remove(self, container_id: str) -> None: ...

    def status(self, container_id: str) -> ContainerStatus: ...

    def logs(self, container_id: str, tail: int) -> str: ...
