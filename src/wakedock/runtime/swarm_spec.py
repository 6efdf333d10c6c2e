"""Translate the Engine's checked, hardened container settings into a Swarm task template."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import docker.errors
from docker.types import ContainerSpec, Healthcheck, Mount, Resources, RestartPolicy, TaskTemplate

from wakedock.runtime.base import ImageMissing
from wakedock.runtime.hardening import MAX_RESTARTS, NANOS_PER_SECOND, TMPFS_OPTIONS
from wakedock.services.spec import ServiceSpec

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
    checked: Mapping[str, Any],
    spec: ServiceSpec,
    *,
    image: str,
    no_new_privileges: bool,
    networks: list[str] | None,
) -> TaskTemplate:
    """The Swarm task of the Engine's checked, hardened container settings."""
    mounts = [
        # Named volumes were prefixed by the Engine settings; only bind sources are absolute.
        Mount(
            options["bind"],
            source,
            type="bind" if source.startswith("/") else "volume",
            read_only=options["mode"] == "ro",
        )
        for source, options in checked["volumes"].items()
    ]
    mounts += [Mount(path, None, type="tmpfs", tmpfs_size=TMPFS_SIZE) for path in spec.tmpfs]
    container = ContainerSpec(
        image,
        # `args`, like the Engine's `command`, keeps the image's entrypoint.
        args=checked["command"],
        env=dict(checked["environment"]),
        # On the task containers too, so they are recognisably this installation's.
        labels=dict(checked["labels"]),
        mounts=mounts,
        read_only=checked["read_only"],
        cap_drop=["ALL"],
        cap_add=list(checked["cap_add"]),
        healthcheck=Healthcheck(**checked["healthcheck"]),
        # The Engine settings' init and stop signal/timeout, in Swarm's words (API 1.37+).
        init=checked["init"],
        stop_signal=checked.get("stop_signal"),
        stop_grace_period=checked["stop_timeout"] * NANOS_PER_SECOND,
    )
    if no_new_privileges:
        container["Privileges"] = {"NoNewPrivileges": True}
    resources = Resources(
        cpu_limit=checked["nano_cpus"], mem_limit=spec.limits.memory_mb * 1024 * 1024
    )
    # docker-py has no argument for it; Limits.Pids exists from API 1.41.
    resources["Limits"]["Pids"] = checked["pids_limit"]
    return TaskTemplate(
        container,
        resources=resources,
        restart_policy=RestartPolicy(
            condition="on-failure", delay=RESTART_DELAY_NS, max_attempts=MAX_RESTARTS
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
