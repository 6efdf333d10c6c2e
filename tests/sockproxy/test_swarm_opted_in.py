"""An owner's opted-in Swarm service (`wakedock.enable=true`, e.g. from `docker stack deploy`)
is woken and put to sleep through `wakedock socket-proxy --swarm`, and nothing else: an update
that changes its spec is refused. Before, every update of a service without WakeDock's own
`wakedock.managed` labels was refused, so no opted-in Swarm service could be woken through it."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import docker
import docker.errors
import pytest
from docker.types import ContainerSpec, Resources, ServiceMode, TaskTemplate

from integration import test_docker_swarm as swarm_tests
from sockproxy.swarm import engine, installation_name, network, proxy_flags
from support.docker_images import TEST_IMAGE
from support.socket_proxy import SocketProxy
from wakedock.runtime.docker_swarm import DockerSwarmRuntime

pytestmark = pytest.mark.integration

__all__ = ["engine", "installation_name", "network", "proxy_flags"]


@pytest.fixture
def opted_in(engine: docker.DockerClient, network: str) -> Iterator[str]:
    """The owner's service at 0 replicas, without WakeDock's hardening (not WakeDock's to judge)."""
    image = engine.images.get(TEST_IMAGE).id
    created = engine.api.create_service(
        TaskTemplate(
            ContainerSpec(image, args=["sleep", "300"]),
            networks=[network],
            # NanoCPUs: a field name the proxy's body reader folds (to NanoCpus).
            resources=Resources(cpu_limit=500_000_000, mem_limit=64 * 1024 * 1024),
        ),
        name=f"{swarm_tests.BYSTANDER_PREFIX}{secrets.token_hex(6)}",
        labels={"wakedock.enable": "true", "owner.note": "deployed by its owner"},
        mode=ServiceMode("replicated", replicas=0),
    )
    yield str(created["ID"])
    engine.api.remove_service(created["ID"])


def _replicas(engine: docker.DockerClient, service_id: str) -> int:
    return int(engine.api.inspect_service(service_id)["Spec"]["Mode"]["Replicated"]["Replicas"])


@pytest.mark.security
def test_an_opted_in_service_is_scaled_through_the_proxy_never_changed(
    engine: docker.DockerClient, proxy: SocketProxy, opted_in: str
) -> None:
    runtime = DockerSwarmRuntime(base_url=proxy.url, installation=swarm_tests.INSTALLATION)
    runtime.start(opted_in)
    assert _replicas(engine, opted_in) == 1
    runtime.stop(opted_in)
    assert _replicas(engine, opted_in) == 0
    # The scale sent back the spec with the engine's defaults filled in: the same settings.
    before = engine.api.inspect_service(opted_in)["Spec"]

    attacker = docker.DockerClient(base_url=proxy.url, timeout=30)
    container = {**before["TaskTemplate"]["ContainerSpec"], "CapabilityAdd": ["SYS_ADMIN"]}
    changes = {
        "image": {"task_template": TaskTemplate(ContainerSpec("busybox:evil", args=["sh"]))},
        "labels": {"labels": {"wakedock.enable": "true"}},
        "privileges": {"task_template": {**before["TaskTemplate"], "ContainerSpec": container}},
        "three replicas": {"mode": ServiceMode("replicated", replicas=3)},
    }
    for what, change in changes.items():
        version = engine.api.inspect_service(opted_in)["Version"]["Index"]
        with pytest.raises(docker.errors.APIError) as refused:
            attacker.api.update_service(opted_in, version, fetch_current_spec=True, **change)
        assert refused.value.status_code == 403, what
        assert "an opted-in service is scaled, never changed" in str(
            refused.value.explanation
        ) or "only a replicated service scaled to 0 or 1" in str(refused.value.explanation), what
    after = engine.api.inspect_service(opted_in)["Spec"]
    assert after == before
    assert proxy.refusals()[-1]["path"].endswith(f"/services/{opted_in}/update")
