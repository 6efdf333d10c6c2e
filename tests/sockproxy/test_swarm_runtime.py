"""WakeDock's Swarm runtime works end to end through `wakedock socket-proxy --swarm`: the Swarm
integration tests (tests/integration/test_docker_swarm.py, their engine, overlay network and
installation) run again with the runtime given only the proxy's socket."""

from __future__ import annotations

import docker
import pytest
from docker.types import ContainerSpec, ServiceMode, TaskTemplate

from integration import test_docker_swarm as swarm_tests
from integration.test_docker_swarm import (
    test_lifecycle_is_hardened_and_scales_between_0_and_1,
    test_missing_image_and_policy_violation_create_nothing,
)
from sockproxy.swarm import engine, installation_name, network, proxy_flags, runtime
from support.docker_images import TEST_IMAGE
from support.socket_proxy import SocketProxy
from wakedock.runtime.client import EngineRefused
from wakedock.runtime.docker_swarm import DockerSwarmRuntime

pytestmark = pytest.mark.integration

__all__ = [
    "engine",
    "installation_name",
    "network",
    "proxy_flags",
    "runtime",
    "test_lifecycle_is_hardened_and_scales_between_0_and_1",
    "test_missing_image_and_policy_violation_create_nothing",
]


@pytest.mark.security
def test_an_unlabelled_service_is_refused_and_a_host_network_service_is_not_created(
    engine: docker.DockerClient,
    runtime: DockerSwarmRuntime,
    proxy: SocketProxy,
    network: str,
) -> None:
    image = engine.images.get(TEST_IMAGE).id
    bystander = engine.api.create_service(
        TaskTemplate(ContainerSpec(image, ["sleep", "300"])),
        name=f"{swarm_tests.BYSTANDER_PREFIX}bystander",
        mode=ServiceMode("replicated", replicas=0),
    )["ID"]
    for operation in (runtime.start, runtime.status, runtime.remove):
        with pytest.raises(EngineRefused, match="does not carry WakeDock's labels"):
            operation(bystander)
    assert engine.api.inspect_service(bystander)["Spec"]["Mode"]["Replicated"]["Replicas"] == 0
    attacker = docker.DockerClient(base_url=proxy.url)
    labels = {"wakedock.managed": swarm_tests.INSTALLATION, "wakedock.service": "hostnet"}
    name = f"{swarm_tests.INSTALLATION}-hostnet"
    with pytest.raises(docker.errors.APIError) as caught:
        attacker.api.create_service(
            TaskTemplate(
                ContainerSpec(image, ["sleep", "300"], cap_drop=["ALL"]), networks=["host"]
            ),
            name=name,
            labels=labels,
        )
    assert caught.value.status_code == 403 and "network_mode 'host'" in str(
        caught.value.explanation
    )
    assert not engine.api.services(filters={"name": name})
