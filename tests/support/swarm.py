"""A single-node Swarm on the local engine, for the Swarm runtime's integration tests."""

from __future__ import annotations

import docker
import docker.errors

from support.components import unavailable

# Loopback only: the test Swarm accepts no cluster traffic from other hosts.
LOOPBACK = "127.0.0.1"


def ensure_swarm_manager(client: docker.DockerClient) -> None:
    """Make the engine a single-node Swarm manager unless it already is one (idempotent)."""
    swarm = client.info().get("Swarm") or {}
    state = swarm.get("LocalNodeState")
    if state == "active" and swarm.get("ControlAvailable"):
        return
    if state != "inactive":
        unavailable(
            f"the Docker engine's Swarm state is {state!r} (not a manager); "
            "the Swarm tests need a manager or an engine outside any Swarm"
        )
    try:
        client.swarm.init(advertise_addr=LOOPBACK, listen_addr=f"{LOOPBACK}:2377")
    except docker.errors.APIError as exc:
        unavailable(f"`docker swarm init` failed on this engine: {exc.explanation}")


def remove_services(client: docker.DockerClient, *, label: str, name_prefix: str) -> None:
    """Remove the services a test run left: those labelled `label` or named `name_prefix*`."""
    for service in client.services.list():
        labels = service.attrs.get("Spec", {}).get("Labels") or {}
        name = service.attrs.get("Spec", {}).get("Name", "")
        key, _, value = label.partition("=")
        if labels.get(key) == value or name.startswith(name_prefix):
            try:
                service.remove()
            except docker.errors.NotFound:
                continue
