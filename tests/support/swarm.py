"""A single-node Swarm on the local engine, for the Swarm runtime's integration tests.

A Swarm task given no network lands on Docker's default bridge, like a plain container: the
tests put their services on an attachable overlay network of their own (`overlay_network`).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager

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


@contextmanager
def overlay_network(client: docker.DockerClient) -> Iterator[str]:
    """An attachable overlay network of the test Swarm, removed after: remove the services on it
    first. The Swarm drops the network at once; this node's copy goes when the last task
    container on it has stopped, which this waits for."""
    name = f"wd-swarm-net-{secrets.token_hex(4)}"
    created = client.networks.create(name, driver="overlay", attachable=True)
    try:
        yield name
    finally:
        deadline = time.monotonic() + 90
        removed = False
        while any(n.name == name for n in client.networks.list(names=[name])):
            try:
                if not removed:
                    created.remove()
                    removed = True
            except docker.errors.NotFound:
                break
            except docker.errors.APIError:
                pass  # a service's tasks still hold it: try again until the deadline
            if time.monotonic() > deadline:
                raise AssertionError(f"the test network {name} is still in use after 90 s")
            time.sleep(0.5)
