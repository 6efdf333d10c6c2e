"""docker.network on the real engine: a created service joins that user-defined network instead
of getting a host port, and is reached by its container name there (from a container on the
same network, as WakeDock in a container reaches it); discovered containers on it are reached
the same way, others on their loopback port; a missing or unusable network stops start-up."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from support.docker_images import TEST_IMAGE, output_of
from support.engine import SOCKET, busybox_spec, two_bridges, wait_for
from support.server import free_port, run_cli
from wakedock.config import DockerSettings
from wakedock.runtime.base import Endpoint, Health
from wakedock.runtime.docker_engine import DockerEngineRuntime
from wakedock.runtime.hardening import LOOPBACK, container_name
from wakedock.runtime.network import NetworkUnusable
from wakedock.services.launch import launch_of, policy_settings
from wakedock.services.spec import ServiceSpec

pytestmark = pytest.mark.integration
PREFIX = "wd-net-"


@pytest.fixture
def networks(engine: docker.DockerClient) -> Iterator[list[str]]:
    """Two user-defined bridges of this test (the first is docker.network); whatever a test
    left on them is its own, removed with them."""
    with two_bridges(engine, PREFIX) as created:
        yield list(created)


@pytest.fixture
def installation(engine: docker.DockerClient, networks: list[str]) -> Iterator[str]:
    name = f"{PREFIX}{secrets.token_hex(3)}"
    yield name
    for container in engine.containers.list(
        all=True, filters={"label": f"wakedock.managed={name}"}
    ):
        container.remove(force=True)


# The client resolves the name with glibc's getaddrinfo, as WakeDock's proxy does (the test
# busybox is a static glibc build: its wget crashes on any name lookup, it has no NSS).
FETCH = (
    "import sys, urllib.request; "
    "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"
)


def _fetch_from_the_network(image: str, engine: docker.DockerClient, network: str, url: str) -> str:
    """What a tiny container on `network` gets from `url` (container to container)."""
    output = output_of(
        engine,
        image,
        ["/usr/bin/python3", "-c", FETCH, url],
        name=f"{network}-client-{secrets.token_hex(2)}",
        network=network,
    )
    return output.decode()


def test_a_service_joins_the_network_and_is_reached_by_its_name(
    engine: docker.DockerClient, python_image: str, installation: str, networks: list[str]
) -> None:
    network = networks[0]
    settings = DockerSettings(installation=installation, network=network)
    runtime = DockerEngineRuntime(base_url=SOCKET, installation=installation, network=network)
    runtime.check_network()
    raw = busybox_spec("app", network)
    del raw["network_mode"]  # the setting decides; a spec need not name the network
    fixed = free_port()
    raw["ports"] = [{"container_port": 8080}, {"container_port": 9090, "host_port": fixed}]
    spec = ServiceSpec.model_validate(raw)
    ref = runtime.create(launch_of(spec, policy=policy_settings(settings)))
    runtime.start(ref)
    wait_for(lambda: runtime.status(ref).health == Health.HEALTHY, "a healthy service", 30)

    attrs = engine.api.inspect_container(ref)
    assert set(attrs["NetworkSettings"]["Networks"]) == {network}
    # The service's port is not on the host; only the port the spec fixed is, on loopback.
    bindings = attrs["HostConfig"]["PortBindings"] or {}
    assert "8080/tcp" not in bindings
    assert bindings["9090/tcp"] == [{"HostIp": LOOPBACK, "HostPort": str(fixed)}]
    assert not (attrs["NetworkSettings"]["Ports"] or {}).get("8080/tcp")

    name = container_name(installation, "app")
    assert runtime.endpoint(ref, 8080) == Endpoint(name, 8080)
    url = f"http://{name}:8080/index.html"
    assert _fetch_from_the_network(python_image, engine, network, url) == "ok\n"


def test_discovered_containers_on_the_network_by_name_others_on_loopback(
    engine: docker.DockerClient, installation: str, networks: list[str]
) -> None:
    runtime = DockerEngineRuntime(base_url=SOCKET, installation=installation, network=networks[0])
    opted_in = {"wakedock.enable": "true"}
    on, off = (
        engine.containers.run(
            TEST_IMAGE,
            ["sleep", "300"],
            detach=True,
            name=f"{network}-discovered",
            network=network,
            labels=opted_in,
            ports={"8080/tcp": (LOOPBACK, None)},
        )
        for network in networks
    )
    off.reload()
    published = int(off.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"])
    assert runtime.endpoint(on.id, 8080) == Endpoint(f"{networks[0]}-discovered", 8080)
    assert runtime.endpoint(off.id, 8080) == Endpoint(LOOPBACK, published)


def test_a_network_that_cannot_serve_is_named_in_the_error(
    engine: docker.DockerClient, installation: str
) -> None:
    missing = f"{PREFIX}missing-{secrets.token_hex(3)}"
    runtime = DockerEngineRuntime(base_url=SOCKET, installation=installation, network=missing)
    with pytest.raises(NetworkUnusable, match=f"docker.network: .*no network named {missing}"):
        runtime.check_network()
    isolated = engine.networks.create(
        f"{PREFIX}isolated-{secrets.token_hex(3)}",
        driver="bridge",
        options={"com.docker.network.bridge.enable_icc": "false"},
    )
    try:
        runtime = DockerEngineRuntime(
            base_url=SOCKET, installation=installation, network=str(isolated.name)
        )
        with pytest.raises(NetworkUnusable, match="cannot reach each other"):
            runtime.check_network()
    finally:
        isolated.remove()


def test_serve_stops_at_start_up_on_a_missing_network(tmp_path: Path, installation: str) -> None:
    missing = f"{PREFIX}missing-{secrets.token_hex(3)}"
    env = {
        "WAKEDOCK_DOCKER__NETWORK": missing,
        "WAKEDOCK_DOCKER__INSTALLATION": installation,
        "WAKEDOCK_DOCKER__RECONCILE_ON_START": "false",
    }
    port = str(free_port())
    done = run_cli(tmp_path / "data", "serve", "--insecure-http", "--port", port, env=env)
    assert done.returncode != 0
    assert f"docker.network: the Docker engine has no network named {missing}" in done.stderr
