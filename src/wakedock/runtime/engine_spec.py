"""Translate a hardened container into docker-py's words for the Docker Engine.

`container_kwargs` gives the keyword arguments of docker-py 7's `client.containers.create(...)`
(plus `stop_timeout`, which only the low-level `create_container` takes); `create_container`
hands them to the engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import docker

from wakedock.runtime.hardening import HardenedContainer
from wakedock.runtime.launch import Healthcheck

NANOS_PER_SECOND = 1_000_000_000
# Hardened settings that belong to the container's Config; all the others go to its HostConfig.
_CONFIG_KEYS = frozenset(
    {"image", "command", "name", "environment", "labels", "healthcheck", "stop_signal"}
)


def nanoseconds(seconds: int) -> int:
    return seconds * NANOS_PER_SECOND


def healthcheck_kwargs(check: Healthcheck) -> dict[str, Any]:
    """The engine's healthcheck (times in nanoseconds)."""
    return {
        "test": list(check.test),
        "interval": nanoseconds(check.interval_s),
        "timeout": nanoseconds(check.timeout_s),
        "retries": check.retries,
    }


def container_kwargs(container: HardenedContainer, network: str | None = None) -> dict[str, Any]:
    """Keyword arguments for docker-py's `containers.create` that launch `container`.

    `network` (docker.network): the container joins it, unless its spec asked for no network
    at all, and only the ports the spec binds to a fixed host port are published (on
    127.0.0.1, as always): WakeDock reaches the others by the container's name on the network,
    and an engine-chosen host port was only ever there for WakeDock to reach.
    """
    launch = container.launch
    published = launch.ports
    if network is not None:
        published = tuple(p for p in launch.ports if p.host_port is not None)
    memory = f"{launch.resources.memory_mb}m"
    kwargs: dict[str, Any] = {
        "image": launch.image,
        "command": list(launch.command) if launch.command is not None else None,
        "name": container.name,
        "environment": dict(launch.environment),
        "labels": dict(container.labels),
        "ports": {
            f"{p.container_port}/{p.transport}": (container.host_ip, p.host_port) for p in published
        },
        "cap_drop": list(container.cap_drop),
        "cap_add": list(launch.cap_add),
        "security_opt": ["no-new-privileges:true"] if container.no_new_privileges else [],
        "read_only": launch.read_only_root,
        "tmpfs": dict.fromkeys(launch.tmpfs, container.tmpfs_options),
        "mem_limit": memory,
        # Equal to mem_limit: no swap on top, so the memory limit is the real ceiling.
        "memswap_limit": memory,
        "nano_cpus": round(launch.resources.cpus * NANOS_PER_SECOND),
        "pids_limit": launch.resources.pids,
        "restart_policy": {"Name": "on-failure", "MaximumRetryCount": container.max_restarts},
        "privileged": container.privileged,
        "healthcheck": healthcheck_kwargs(launch.healthcheck),
        "volumes": {
            mount.source: {"bind": mount.target, "mode": "ro" if mount.read_only else "rw"}
            for mount in container.mounts
        },
        "init": container.init,
        "stop_timeout": launch.stop_timeout_s,
    }
    if launch.stop_signal is not None:
        kwargs["stop_signal"] = launch.stop_signal
    # Only modes the launch policy accepted reach here; anything else Docker rejects by name.
    modes = {
        "network_mode": launch.namespaces.network or network,
        "pid_mode": launch.namespaces.pid,
        "ipc_mode": launch.namespaces.ipc,
        "uts_mode": launch.namespaces.uts,
    }
    kwargs.update({key: mode for key, mode in modes.items() if mode is not None})
    return kwargs


def create_container(client: docker.DockerClient, settings: Mapping[str, Any]) -> str:
    """Create through docker-py's low-level API: its high-level `containers.create` cannot set
    Config.StopTimeout. The translation is the one `containers.create` does for these keys."""
    ports: dict[int | str, Any] = dict(settings["ports"])
    volumes: dict[str, Mapping[str, str]] = dict(settings["volumes"])
    host = {
        key: value
        for key, value in settings.items()
        if key not in _CONFIG_KEYS and key not in ("ports", "volumes", "stop_timeout")
    }
    host_config = client.api.create_host_config(
        port_bindings=ports or None, binds=volumes or None, **host
    )
    created = client.api.create_container(
        **{key: value for key, value in settings.items() if key in _CONFIG_KEYS},
        stop_timeout=settings["stop_timeout"],
        ports=[tuple(key.split("/", 1)) for key in sorted(map(str, ports))] or None,
        volumes=[mount["bind"] for mount in volumes.values()] or None,
        host_config=host_config,
    )
    return str(created["Id"])
