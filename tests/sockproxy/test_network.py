"""`wakedock socket-proxy --network NAME` (docker.network): WakeDock's runtime creates, starts and
finds its containers on that network through the proxy; an attacker's create on another
network, Docker's default bridge, `host`, another container's namespace, or with an alias that
could take over a name on the shared network is refused 403; only that network is inspected."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import docker
import docker.errors
import pytest

from sockproxy.test_attacks import _create_kwargs, _no_container_of, _refused
from support.docker_images import TEST_IMAGE
from support.engine import busybox_spec, two_bridges
from support.socket_proxy import SocketProxy
from wakedock.config import DockerSettings
from wakedock.runtime.base import Endpoint
from wakedock.runtime.docker_engine import DockerEngineRuntime
from wakedock.runtime.hardening import container_name
from wakedock.services.launch import launch_of, policy_settings
from wakedock.services.spec import ServiceSpec

pytestmark = pytest.mark.integration
PREFIX = "wd-net-"


@pytest.fixture(scope="module")
def networks(engine: docker.DockerClient) -> Iterator[tuple[str, str]]:
    """docker.network and another user-defined network, for this module."""
    with two_bridges(engine, f"{PREFIX}sp-") as created:
        yield created


@pytest.fixture
def network(networks: tuple[str, str]) -> str:
    """The network the shared fixtures (`installation`) and `_create_kwargs` use."""
    return networks[0]


@pytest.fixture(scope="module")
def installation_name() -> str:
    return f"{PREFIX}sp-{secrets.token_hex(3)}"


@pytest.fixture(scope="module")
def proxy_flags(networks: tuple[str, str]) -> tuple[str, ...]:
    return ("--network", networks[0])


def test_the_runtime_works_on_the_network_through_the_proxy(
    engine: docker.DockerClient, proxy: SocketProxy, installation: str, network: str
) -> None:
    runtime = DockerEngineRuntime(base_url=proxy.url, installation=installation, network=network)
    runtime.check_network()  # the start-up check passes the proxy
    raw = busybox_spec("app", network)
    del raw["network_mode"]
    policy = policy_settings(DockerSettings(installation=installation, network=network))
    ref = runtime.create(launch_of(ServiceSpec.model_validate(raw), policy=policy))
    runtime.start(ref)
    assert set(engine.api.inspect_container(ref)["NetworkSettings"]["Networks"]) == {network}
    assert runtime.endpoint(ref, 8080) == Endpoint(container_name(installation, "app"), 8080)
    assert not proxy.refusals()


@pytest.mark.security
@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"network": "other"}, "only the network --network names"),
        ({"network": None, "network_mode": "host"}, "network_mode 'host'"),
        ({"network": None, "network_mode": "bridge"}, "only the network --network names"),
        ({"network": None}, "HostConfig.NetworkMode: only the network --network names"),
        ({"network": None, "network_mode": "container:x"}, "joins another container's"),
    ],
)
def test_a_create_off_the_network_is_refused(
    engine: docker.DockerClient,
    attacker: docker.DockerClient,
    proxy: SocketProxy,
    installation: str,
    networks: tuple[str, str],
    extra: dict[str, Any],
    reason: str,
) -> None:
    if extra.get("network") == "other":
        extra = {"network": networks[1]}
    kwargs = _create_kwargs(installation, networks[0], **extra)
    message = _refused(proxy, lambda: attacker.containers.create(**kwargs), "/containers/create")
    assert reason in message
    assert _no_container_of(engine, kwargs["name"])


@pytest.mark.security
def test_an_alias_on_the_shared_network_is_refused(
    engine: docker.DockerClient,
    attacker: docker.DockerClient,
    proxy: SocketProxy,
    installation: str,
    network: str,
) -> None:
    """An alias would answer for another container's name (the database's, say) there."""
    api = attacker.api
    name = container_name(installation, "alias")

    def create() -> Any:
        return api.create_container(
            TEST_IMAGE,
            ["sleep", "300"],
            name=name,
            labels={"wakedock.managed": installation, "wakedock.service": "alias"},
            host_config=api.create_host_config(
                network_mode=network,
                cap_drop=["ALL"],
                security_opt=["no-new-privileges:true"],
                mem_limit="64m",
                pids_limit=64,
            ),
            networking_config=api.create_networking_config(
                {network: api.create_endpoint_config(aliases=["postgres"])}
            ),
        )

    assert "aliases, addresses and links" in _refused(proxy, create, "/containers/create")
    assert _no_container_of(engine, name)


@pytest.mark.security
def test_only_the_network_itself_is_inspected_and_not_who_is_on_it(
    attacker: docker.DockerClient, proxy: SocketProxy, networks: tuple[str, str]
) -> None:
    ours, other = networks
    inspected = attacker.api.inspect_network(ours)
    assert inspected["Name"] == ours and "Containers" not in inspected
    refused = _refused(proxy, lambda: attacker.api.inspect_network(other), "/networks/")
    assert "only the network --network names" in refused
    _refused(proxy, lambda: attacker.api.inspect_network("host"), "/networks/")
    with pytest.raises(docker.errors.APIError):
        attacker.api.create_network(f"{PREFIX}sp-created")
