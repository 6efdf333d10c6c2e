"""The real engine behind `wakedock socket-proxy` (one proxy per module), this area's own
installation (`wd-sockproxy-*`) and the integration tests' network, removed after each test."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import docker
import pytest

from support.engine import engine, network
from support.socket_proxy import SocketProxy, start_socket_proxy

__all__ = ["engine", "network"]


@pytest.fixture(scope="module")
def installation_name() -> str:
    return f"wd-sockproxy-{secrets.token_hex(3)}"


@pytest.fixture(scope="module")
def proxy_flags() -> tuple[str, ...]:
    """More arguments of the module's proxy (`--swarm`)."""
    return ()


@pytest.fixture(scope="module")
def proxy(
    engine: docker.DockerClient,
    installation_name: str,
    proxy_flags: tuple[str, ...],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SocketProxy]:
    # A short directory: a unix socket path is limited to 107 bytes.
    yield from start_socket_proxy(
        tmp_path_factory.mktemp("sp"), "--installation", installation_name, *proxy_flags
    )


@pytest.fixture
def installation(
    engine: docker.DockerClient, installation_name: str, network: str
) -> Iterator[str]:
    """The proxy's installation; what a test created under it is removed after the test."""
    yield installation_name
    labelled = engine.containers.list(
        all=True, filters={"label": f"wakedock.managed={installation_name}"}
    )
    # By name too: a create the proxy wrongly let through may carry other labels.
    named = engine.containers.list(all=True, filters={"name": f"^/{installation_name}-"})
    for container in {c.id: c for c in [*labelled, *named]}.values():
        container.remove(force=True)


@pytest.fixture
def attacker(proxy: SocketProxy) -> Iterator[docker.DockerClient]:
    """A docker-py client that only has the proxy's socket."""
    client = docker.DockerClient(base_url=proxy.url, timeout=30)
    yield client
    client.close()
