"""Hardened launch settings (S6.2, CIS Docker Benchmark section 5) for every WakeDock container.

`harden` is pure: it turns a `Launch` into the `HardenedContainer` this installation creates, so
the hardening can be checked without an engine. The adapters translate that one value into their
engine's words (`runtime/engine_spec.py`, `runtime/swarm_spec.py`); the engine integration tests
then prove it with `docker inspect` (and `runtime/cis.py` names each CIS item).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from wakedock.runtime.labels import managed_labels
from wakedock.runtime.launch import Launch, Mount, MountKind

LOOPBACK = "127.0.0.1"
TMPFS_OPTIONS = "rw,noexec,nosuid,size=64m"
MAX_RESTARTS = 5


def container_name(installation: str, service: str) -> str:
    """`<installation>-<service>`: apart from the operator's own containers and from another
    installation's on the same engine (the default installation gives `wakedock-<service>`)."""
    return f"{installation}-{service}"


def volume_name(installation: str, service: str, volume: str) -> str:
    """Prefixed so that one service cannot name (and so mount) another service's volume."""
    return f"{installation}_{service}_{volume}"


@dataclass(frozen=True)
class HardenedContainer:
    """A launch as this installation creates it: named, labelled, its volumes namespaced, and
    the settings every WakeDock container gets whatever its spec asked."""

    launch: Launch
    name: str
    labels: Mapping[str, str]
    # Named volumes carry their installation-and-service prefix; bind sources stay host paths.
    mounts: tuple[Mount, ...]
    cap_drop: tuple[str, ...] = ("ALL",)
    no_new_privileges: bool = True
    privileged: bool = False
    # PID 1 gets no default signal handlers: an app that installs none (busybox httpd, most
    # shell scripts) would ignore SIGTERM and every stop would end in SIGKILL after the
    # timeout. The engine's init (tini) forwards the stop signal and reaps zombies.
    init: bool = True
    tmpfs_options: str = TMPFS_OPTIONS
    # Restarted on failure, a bounded number of times.
    max_restarts: int = MAX_RESTARTS
    # Published ports listen here only: the WakeDock proxy is the sole way in (CIS 5.13).
    host_ip: str = LOOPBACK


def _mounts(launch: Launch, installation: str) -> tuple[Mount, ...]:
    mounts: list[Mount] = []
    seen: set[str] = set()
    for mount in launch.mounts:
        if mount.kind is MountKind.VOLUME:
            mount = Mount(
                mount.kind,
                volume_name(installation, launch.service, mount.source),
                mount.target,
                mount.read_only,
            )
        if mount.source in seen:
            raise ValueError(f"{mount.source} is mounted twice")
        seen.add(mount.source)
        mounts.append(mount)
    return tuple(mounts)


def harden(launch: Launch, installation: str) -> HardenedContainer:
    """The container `installation` creates for `launch`."""
    return HardenedContainer(
        launch=launch,
        name=container_name(installation, launch.service),
        labels=managed_labels(installation, launch.service),
        mounts=_mounts(launch, installation),
    )
