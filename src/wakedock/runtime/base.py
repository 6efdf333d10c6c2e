"""The one interface WakeDock drives containers through (Docker Engine, Docker Swarm)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

from wakedock.errors import (
    Conflict,
    DependencyUnavailable,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from wakedock.runtime.launch import Launch


class RuntimeUnavailable(DependencyUnavailable):
    code = "docker_unavailable"


class ImageMissing(InvalidInput):
    status_code = 422
    code = "image_missing"

    def __init__(
        self,
        # The reference is the client's own input: it is not repeated in the answer.
        detail: str = "the image is not present on the Docker host (WakeDock never pulls it)",
    ) -> None:
        super().__init__(detail, extra={"field": "image"})


class ContainerNotFound(NotFound):
    code = "container_not_found"


class NotManaged(PermissionDenied):
    """A container neither created by WakeDock nor opted in with `wakedock.enable=true`."""

    code = "container_not_managed"


class InvalidState(Conflict):
    """The operation needs another state (e.g. stats of a stopped service)."""

    code = "invalid_state"


class RuntimeKind(StrEnum):
    ENGINE = "engine"
    SWARM = "swarm"


class State(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    STARTING = "starting"
    MISSING = "missing"


class Health(StrEnum):
    """What the workload's healthcheck says; STOPPED for a workload that is not running."""

    STARTING = "starting"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    STOPPED = "stopped"


@dataclass(frozen=True)
class ContainerStatus:
    id: str
    name: str
    state: State
    # None when the container has no healthcheck (see `reported_health`).
    health: Health | None
    # Why the last run ended, as the engine says (exit code, its error), when it ended.
    exit_code: int | None = None
    error: str | None = None


def reported_health(state: State, engine_health: str | None) -> Health | None:
    """Health as users read it: a stopped workload is `stopped`. The engine keeps the result of
    the last check of an exited container (usually `unhealthy`, the check failed as it went
    down), which would make every sleeping service look broken."""
    if state is State.STOPPED:
        return Health.STOPPED
    if engine_health is None:
        return None
    try:
        return Health(engine_health)
    except ValueError:
        # A status newer engines may add: no claim is better than a wrong one.
        return None


class Endpoint(NamedTuple):
    """Where WakeDock reaches a port of a running workload."""

    host: str
    port: int


@dataclass(frozen=True)
class ContainerStats:
    """One resource sample. CPU is a percentage of one CPU (200.0 = two CPUs busy)."""

    cpu_percent: float
    memory_bytes: int
    memory_limit_bytes: int
    network_rx_bytes: int
    network_tx_bytes: int


@dataclass(frozen=True)
class DiscoveredWorkload:
    """A container (or Swarm service) carrying the opt-in label `wakedock.enable=true`."""

    ref: str
    name: str
    image: str
    state: State
    labels: Mapping[str, str] = field(default_factory=dict)
    # The image's or container's own Docker healthcheck (["CMD", ...]), when it has one.
    healthcheck: tuple[str, ...] | None = None


@dataclass(frozen=True)
class WorkloadChange:
    """One event of the engine about a workload: its ref and what happened (`create`,
    `destroy` (Podman: `remove`), `rename`; a Swarm service's `create`, `update`, `remove`)."""

    ref: str
    action: str


class WorkloadChanges(Protocol):
    """An open event stream: iterated in one thread (blocking), closed from another. The
    iteration ends when the connection to the engine is lost."""

    def __iter__(self) -> Iterator[WorkloadChange]: ...

    def close(self) -> None: ...


class ContainerRuntime(Protocol):
    """What WakeDock needs from a container engine. Every method blocks: call it off the loop.

    `ref` is what `create` returned: a container id (Engine) or a service id (Swarm). Every method
    refuses a ref that is neither created by this installation nor opted in (`NotManaged`).
    """

    kind: RuntimeKind

    def ping(self) -> None:
        """Return when the engine answers; RuntimeUnavailable when it cannot be reached."""
        ...

    def create(self, launch: Launch) -> str:
        """Create (not start) the hardened workload of `launch`; returns its ref.

        `launch` is what the launch policy accepted; the runtime adds the hardening every
        workload gets (capabilities dropped, no new privileges, limits, loopback-only ports).
        """
        ...

    def has_image(self, image: str) -> bool:
        """Whether `image` is on the engine already (WakeDock never pulls one): what `create`
        checks first, asked beforehand by a form that lists every problem in one round."""
        ...

    def start(self, ref: str) -> None: ...

    def stop(self, ref: str, *, pause: bool = False) -> None: ...

    def remove(self, ref: str) -> None:
        """Remove the workload; a ref already gone is not an error."""
        ...

    def status(self, ref: str) -> ContainerStatus: ...

    def logs(self, ref: str, tail: int) -> str: ...

    def stats(self, ref: str) -> ContainerStats:
        """A sample of the running workload; `ContainerNotFound`/state errors when not running."""
        ...

    def discover(self) -> list[DiscoveredWorkload]:
        """Every workload labelled `wakedock.enable=true` (never unlabelled ones)."""
        ...

    def discovered(self, ref: str) -> DiscoveredWorkload | None:
        """The workload `ref` if it exists and is labelled `wakedock.enable=true`, else None."""
        ...

    def follow(self) -> WorkloadChanges:
        """Open the engine's event stream of opted-in workloads being created, removed or
        renamed (Swarm: updated); RuntimeUnavailable when the engine cannot be reached."""
        ...

    def find(self, service_name: str) -> str | None:
        """The ref of the workload this installation created for `service_name`, if any."""
        ...

    def endpoint(self, ref: str, container_port: int) -> Endpoint:
        """Where WakeDock reaches `container_port` of the running workload.

        Engine: 127.0.0.1 and the published port (which changes at every start when the engine
        picks it); with docker.network, for a container on that network, its name there and
        `container_port`. Swarm: the service's name and the port, on the service's network.
        A host name is resolved by whoever connects (off the event loop).
        """
        ...

    def inspect(self, ref: str) -> list[dict[str, Any]]:
        """`docker inspect` of the container(s) currently backing `ref` (for cis-check)."""
        ...
