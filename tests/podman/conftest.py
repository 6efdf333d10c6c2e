"""Podman's Docker-compatible API (`podman system service`, one per session, tests/support/
podman.py) standing in for the engine: `engine` is a docker-py client on Podman's socket, so the
engine integration tests re-imported here inspect what Podman made. Networks and installations
are named `wd-podman-*` and removed after each test."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import docker
import pytest

from support.docker_images import docker_client, ensure_test_image
from support.podman import Podman, start_podman


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    docker_engine = docker_client()
    ensure_test_image(docker_engine)
    # A short directory: a unix socket path is limited to 107 bytes.
    yield from start_podman(tmp_path_factory.mktemp("pm"), docker_engine)


@pytest.fixture(scope="module")
def engine(podman: Podman) -> Iterator[docker.DockerClient]:
    """docker-py on Podman's socket: what the re-imported tests call `engine`."""
    client = docker.DockerClient(base_url=podman.url, timeout=30)
    yield client
    client.close()


@pytest.fixture
def network(engine: docker.DockerClient) -> Iterator[str]:
    """A user-defined bridge (netavark) for this test's containers, removed after them."""
    created = engine.networks.create(f"wd-podman-net-{secrets.token_hex(4)}", driver="bridge")
    yield str(created.name)
    for container in engine.containers.list(all=True, filters={"network": created.name}):
        container.remove(force=True)
    created.remove()


@pytest.fixture
def installation(engine: docker.DockerClient, network: str) -> Iterator[str]:
    name = f"wd-podman-{secrets.token_hex(4)}"
    yield name
    for container in engine.containers.list(
        all=True, filters={"label": f"wakedock.managed={name}"}
    ):
        container.remove(force=True)
