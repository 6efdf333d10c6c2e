"""Translate a hardened container into a Swarm task template."""

from __future__ import annotations

from typing import Any, Protocol

import docker.errors
from docker.types import ContainerSpec, Healthcheck, Mount, Resources, RestartPolicy, TaskTemplate

from wakedock.runtime.base import ImageMissing
from wakedock.runtime.engine_spec import NANOS_PER_SECOND, healthcheck_kwargs, nanoseconds
from wakedock.runtime.hardening import TMPFS_OPTIONS, HardenedContainer
from wakedock.runtime.launch import MountKind

# A crash loop backs off a little instead of burning the 5 attempts in a second.
RESTART_DELAY_NS = NANOS_PER_SECOND
# Same size as the Engine runtime's tmpfs (the engine mounts Swarm tmpfs nosuid,nodev,noexec).
TMPFS_SIZE = next(
    o.removeprefix("size=") for o in TMPFS_OPTIONS.split(",") if o.startswith("size=")
)


class ImageApi(Protocol):
    def inspect_image(self, image: str) -> dict[str, Any]: ...
    def networks(self, names: list[str] | None = None) -> list[dict[str, Any]]: ...


def task_template(
    hardened: HardenedContainer,
    *,
    image: str,
    no_new_privileges: bool,
    networks: list[str] | None,
) -> TaskTemplate:
    """The Swarm task of the hardened container (what the Engine would create)."""
    launch = hardened.launch
    mounts = [
        Mount(
            mount.target,
            mount.source,
            type="bind" if mount.kind is MountKind.BIND else "volume",
            read_only=mount.read_only,
        )
        for mount in hardened.mounts
    ]
    mounts += [Mount(path, None, type="tmpfs", tmpfs_size=TMPFS_SIZE) for path in launch.tmpfs]
    container = ContainerSpec(
        image,
        # `args`, like the Engine's `command`, keeps the image's entrypoint.
        args=list(launch.command) if launch.command is not None else None,
        env=dict(launch.environment),
        # On the task containers too, so they are recognisably this installation's.
        labels=dict(hardened.labels),
        mounts=mounts,
        read_only=launch.read_only_root,
        cap_drop=list(hardened.cap_drop),
        cap_add=list(launch.cap_add),
        healthcheck=Healthcheck(**healthcheck_kwargs(launch.healthcheck)),
        # The Engine's init and stop signal/timeout, in Swarm's words (API 1.37+).
        init=hardened.init,
        stop_signal=launch.stop_signal,
        stop_grace_period=nanoseconds(launch.stop_timeout_s),
    )
    if no_new_privileges and hardened.no_new_privileges:
        container["Privileges"] = {"NoNewPrivileges": True}
    resources = Resources(
        cpu_limit=round(launch.resources.cpus * NANOS_PER_SECOND),
        mem_limit=launch.resources.memory_mb * 1024 * 1024,
    )
    # docker-py has no argument for it; Limits.Pids exists from API 1.41.
    resources["Limits"]["Pids"] = launch.resources.pids
    return TaskTemplate(
        container,
        resources=resources,
        restart_policy=RestartPolicy(
            condition="on-failure", delay=RESTART_DELAY_NS, max_attempts=hardened.max_restarts
        ),
        networks=networks,
    )


def pinned_image(api: ImageApi, reference: str) -> str:
    """The local image by digest or id: Swarm pulls any other reference from its registry first."""
    try:
        image = api.inspect_image(reference)
    except docker.errors.NotFound:
        raise ImageMissing() from None
    digests = image.get("RepoDigests") or []
    return str(digests[0] if digests else image["Id"])


def swarm_networks(api: ImageApi, network_mode: str | None) -> list[str] | None:
    if network_mode in (None, "default", "bridge"):
        return None
    if not any(
        n.get("Name") == network_mode and n.get("Scope") == "swarm"
        for n in api.networks(names=[str(network_mode)])
    ):
        raise ValueError(f"network_mode: {network_mode!r} is not a Swarm (overlay) network")
    return [str(network_mode)]
