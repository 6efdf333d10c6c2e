"""docker.network in the Engine runtime's words and in the launch policy: the container joins
the network, only fixed host ports are published, a spec cannot pick another network; and why
a network the engine describes cannot serve (kinds the integration tests cannot create)."""

from __future__ import annotations

from typing import Any

import pytest

from wakedock.runtime.engine_spec import container_kwargs
from wakedock.runtime.hardening import LOOPBACK, harden
from wakedock.runtime.network import endpoint_host, network_problem
from wakedock.services.launch import launch_of
from wakedock.services.policy import PolicySettings, violations
from wakedock.services.spec import ServiceSpec

NETWORK = "wakedock_services"
POLICY = PolicySettings(network=NETWORK)


def _spec(**overrides: Any) -> ServiceSpec:
    return ServiceSpec.model_validate(
        {
            "name": "web",
            "image": "wakedock/test-app:1",
            "readiness": {"type": "http", "path": "/health", "port": 8080},
            "ports": [{"container_port": 8080}, {"container_port": 9090, "host_port": 19090}],
            **overrides,
        }
    )


def test_the_container_joins_the_network_and_only_fixed_host_ports_are_published() -> None:
    kwargs = container_kwargs(harden(launch_of(_spec(), policy=POLICY), "wakedock"), NETWORK)
    assert kwargs["network_mode"] == NETWORK
    assert kwargs["ports"] == {"9090/tcp": (LOOPBACK, 19090)}
    # Without the setting, as before: every port on loopback, the engine's default network.
    before = container_kwargs(harden(launch_of(_spec()), "wakedock"))
    assert "network_mode" not in before
    assert before["ports"] == {"8080/tcp": (LOOPBACK, None), "9090/tcp": (LOOPBACK, 19090)}


def test_a_spec_asking_for_no_network_keeps_none() -> None:
    launch = launch_of(_spec(ports=[], network_mode="none"), policy=POLICY)
    assert container_kwargs(harden(launch, "wakedock"), NETWORK)["network_mode"] == "none"


@pytest.mark.parametrize(
    ("mode", "rules"),
    [
        (None, []),
        (NETWORK, []),
        ("none", []),
        ("other_net", ["other_network"]),
        ("bridge", ["other_network"]),
        ("host", ["host_namespace"]),
        ("container:db", ["shared_namespace"]),
    ],
)
def test_the_policy_keeps_services_on_the_network(mode: str | None, rules: list[str]) -> None:
    found = violations(_spec(network_mode=mode), POLICY)
    assert [v.rule for v in found] == rules
    if rules == ["other_network"]:
        assert found[0].field == "network_mode"
        assert "docker.network" in found[0].message
    # Without docker.network a spec may name its own network, as before.
    assert [v.rule for v in violations(_spec(network_mode="other_net"), PolicySettings())] == []


@pytest.mark.parametrize(
    ("attrs", "problem"),
    [
        ({"Name": NETWORK, "Driver": "bridge", "Scope": "local"}, None),
        ({"Name": NETWORK, "Driver": "overlay", "Scope": "swarm", "Attachable": True}, None),
        ({"Name": "0123abcd", "Driver": "bridge"}, "not its id"),
        ({"Name": NETWORK, "Driver": "host"}, "not a user-defined network"),
        ({"Name": NETWORK, "Driver": "null"}, "not a user-defined network"),
        (
            {
                "Name": NETWORK,
                "Driver": "bridge",
                "Options": {"com.docker.network.bridge.default_bridge": "true"},
            },
            "no name resolution",
        ),
        ({"Name": NETWORK, "Driver": "overlay", "Ingress": True}, "routing mesh"),
        ({"Name": NETWORK, "Driver": "overlay", "Scope": "swarm"}, "--attachable"),
    ],
)
def test_why_a_network_cannot_serve(attrs: dict[str, Any], problem: str | None) -> None:
    found = network_problem(attrs, NETWORK)
    assert found is None if problem is None else problem in str(found)


def test_the_endpoint_host_is_the_name_of_a_container_with_an_address_there() -> None:
    def attrs(address: str) -> dict[str, Any]:
        networks = {NETWORK: {"IPAddress": address}}
        return {"Name": "/wakedock-web", "NetworkSettings": {"Networks": networks}}

    assert endpoint_host(attrs("172.30.0.2"), NETWORK) == "wakedock-web"
    assert endpoint_host(attrs(""), NETWORK) is None  # not running: Docker's DNS has no answer
    assert endpoint_host(attrs("172.30.0.2"), "elsewhere") is None
