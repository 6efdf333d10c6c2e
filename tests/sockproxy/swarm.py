"""The fixtures of the Swarm tests through `wakedock socket-proxy --swarm`: the Swarm
integration tests' engine, overlay network and installation, and the Swarm runtime given only
the proxy's socket (the module's proxy: tests/sockproxy/conftest.py)."""

from __future__ import annotations

import pytest

from integration import test_docker_swarm as swarm_tests
from integration.test_docker_swarm import engine, network
from support.socket_proxy import SocketProxy
from wakedock.runtime.docker_swarm import DockerSwarmRuntime

__all__ = ["engine", "installation_name", "network", "proxy_flags", "runtime"]


@pytest.fixture(scope="module")
def installation_name() -> str:
    return swarm_tests.INSTALLATION


@pytest.fixture(scope="module")
def proxy_flags() -> tuple[str, ...]:
    return ("--swarm",)


@pytest.fixture
def runtime(proxy: SocketProxy, network: str) -> DockerSwarmRuntime:
    return DockerSwarmRuntime(base_url=proxy.url, installation=swarm_tests.INSTALLATION)
