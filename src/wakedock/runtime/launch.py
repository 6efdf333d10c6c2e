"""What crosses the runtime port to launch a workload: typed values, no engine vocabulary.

The services layer builds a `Launch` from a checked service spec (`wakedock.services.launch`);
the runtime adds what every WakeDock container gets whatever was asked (`runtime/hardening.py`)
and the adapters translate that into the engine's own words.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Transport(StrEnum):
    TCP = "tcp"
    UDP = "udp"


@dataclass(frozen=True)
class PublishedPort:
    container_port: int
    # None lets the engine choose a free host port.
    host_port: int | None = None
    transport: Transport = Transport.TCP


class MountKind(StrEnum):
    # A volume the service names; the runtime keeps it apart from other services' volumes.
    VOLUME = "volume"
    # A host directory the launch policy allowed.
    BIND = "bind"


@dataclass(frozen=True)
class Mount:
    kind: MountKind
    # The volume's name as the service gives it, or the absolute host path of a bind mount.
    source: str
    target: str
    read_only: bool


@dataclass(frozen=True)
class Resources:
    memory_mb: int
    cpus: float
    pids: int


@dataclass(frozen=True)
class Healthcheck:
    """The engine's healthcheck: `test` starts with CMD or CMD-SHELL; times in seconds."""

    test: tuple[str, ...]
    interval_s: int
    timeout_s: int
    retries: int


@dataclass(frozen=True)
class Namespaces:
    """Modes the launch policy accepted; None keeps the engine's private default."""

    network: str | None = None
    pid: str | None = None
    ipc: str | None = None
    uts: str | None = None


@dataclass(frozen=True)
class Launch:
    """One workload to create, as checked by the launch policy (built only from a checked spec)."""

    service: str
    image: str
    command: tuple[str, ...] | None
    # Resolved values, secrets among them: never shown in a repr.
    environment: Mapping[str, str] = field(repr=False)
    healthcheck: Healthcheck
    resources: Resources
    ports: tuple[PublishedPort, ...] = ()
    mounts: tuple[Mount, ...] = ()
    # Paths inside the container mounted as small, non-executable tmpfs.
    tmpfs: tuple[str, ...] = ()
    cap_add: tuple[str, ...] = ()
    read_only_root: bool = True
    # None: the image's STOPSIGNAL (else SIGTERM); SIGKILL follows after `stop_timeout_s`.
    stop_signal: str | None = None
    stop_timeout_s: int = 10
    namespaces: Namespaces = Namespaces()
