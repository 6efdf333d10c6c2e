"""WakeDock's Docker Engine runtime works end to end through the socket proxy: the engine
integration tests (tests/integration/test_docker_engine.py) run again with the runtime's
DOCKER_HOST pointed at the proxy's socket, and a refused operation is what the user sees."""

from __future__ import annotations

import time

import docker
import pytest

from integration.test_docker_engine import (
    test_launch_is_hardened_in_docker_inspect,
    test_lifecycle_stop_pause_start_remove,
    test_missing_image_is_refused_without_repeating_it,
    test_opted_in_container_is_managed,
)
from support.docker_images import TEST_IMAGE
from support.socket_proxy import SocketProxy
from wakedock.runtime.client import EngineRefused
from wakedock.runtime.docker_engine import DockerEngineRuntime

pytestmark = pytest.mark.integration

__all__ = [
    "test_launch_is_hardened_in_docker_inspect",
    "test_lifecycle_stop_pause_start_remove",
    "test_missing_image_is_refused_without_repeating_it",
    "test_opted_in_container_is_managed",
]


@pytest.fixture
def runtime(proxy: SocketProxy, installation: str) -> DockerEngineRuntime:
    """The runtime under test, with only the proxy's socket."""
    return DockerEngineRuntime(base_url=proxy.url, installation=installation)


def test_an_unlabelled_container_is_refused_by_the_proxy_and_left_running(
    engine: docker.DockerClient, runtime: DockerEngineRuntime, proxy: SocketProxy, network: str
) -> None:
    bystander = engine.containers.run(
        TEST_IMAGE,
        ["sleep", "300"],
        detach=True,
        name=f"wd-sockproxy-bystander-{int(time.time() * 1000)}",
        network=network,
    )
    try:
        for operation in (runtime.stop, runtime.start, runtime.status, runtime.remove):
            with pytest.raises(EngineRefused, match="does not carry WakeDock's labels"):
                operation(bystander.id)
        bystander.reload()
        assert bystander.status == "running"
        assert any(r["reason"].endswith("WakeDock's labels") for r in proxy.refusals())
    finally:
        bystander.remove(force=True)
