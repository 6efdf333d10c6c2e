"""The same services API, configured for Swarm (`docker.runtime: swarm`), on a real single-node
Swarm: create, start, healthy, cis-check of the task container, stop, delete."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from conftest import Harness
from support.docker_images import TEST_IMAGE, docker_client, ensure_test_image
from support.swarm import ensure_swarm_manager, overlay_network, remove_services
from wakedock.config import DockerSettings
from wakedock.rbac.permissions import Role
from wakedock.runtime.cis import check_container
from wakedock.runtime.factory import make_runtime

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def engine() -> docker.DockerClient:
    client = docker_client()
    ensure_swarm_manager(client)
    ensure_test_image(client)
    return client


@pytest.fixture
def network(engine: docker.DockerClient) -> Iterator[str]:
    """An attachable overlay network for this test's services, removed after them."""
    with overlay_network(engine) as name:
        yield name


@pytest.fixture
def installation(engine: docker.DockerClient, network: str) -> Iterator[str]:
    name = f"wd-swarm-api-{secrets.token_hex(3)}"
    yield name
    remove_services(engine, label=f"wakedock.managed={name}", name_prefix="no-such-prefix-")


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'wakedock.db'}"


def test_services_api_drives_swarm(
    make_harness: Callable[..., Harness],
    engine: docker.DockerClient,
    installation: str,
    network: str,
) -> None:
    h = make_harness(docker={"runtime": "swarm", "installation": installation})
    assert h.components.runtime.kind == "swarm"
    auth = h.bearer(h.token_for(Role.DEVELOPER))
    body = {
        "name": "swarmed",
        "image": TEST_IMAGE,
        "command": ["/bin/sh", "-c", "echo ok > /tmp/i.html && exec httpd -f -p 8080 -h /tmp"],
        "network_mode": network,
        "readiness": {"type": "http", "port": 8080, "path": "/i.html", "interval_s": 1},
    }
    created = h.client.post("/api/v1/services", json=body, headers=auth)
    assert created.status_code == 201, created.text
    assert created.json()["runtime"] == "swarm"
    sid = created.json()["id"]
    [service] = engine.services.list(filters={"label": f"wakedock.managed={installation}"})
    assert service.attrs["Spec"]["Mode"]["Replicated"]["Replicas"] == 0

    assert h.client.post(f"/api/v1/services/{sid}/start", headers=auth).status_code == 200
    deadline = time.monotonic() + 90
    status: dict[str, object] = {}
    while time.monotonic() < deadline:
        status = h.client.get(f"/api/v1/services/{sid}/status", headers=auth).json()
        # The task turns `running` a moment after its container's first healthy check.
        if status["state"] == "running" and status["health"] == "healthy":
            break
        time.sleep(0.5)
    assert status["state"] == "running" and status["health"] == "healthy", status

    # cis-check's view of the task container: everything passes but no-new-privileges, which
    # Swarm can only set from API 1.44 (this engine speaks less: a documented limitation).
    [attrs] = h.components.runtime.inspect(h.components.services.get(sid).container_ref or "")
    assert set(attrs["NetworkSettings"]["Networks"]) == {network}  # not the default bridge
    failed = {r.id for r in check_container(attrs) if not r.passed}
    api = tuple(int(p) for p in engine.version()["ApiVersion"].split("."))
    assert failed == (set() if api >= (1, 44) else {"5.26"})

    stopped = h.client.post(f"/api/v1/services/{sid}/stop", headers=auth)
    assert stopped.json()["state"] == "stopped"
    now = h.client.get(f"/api/v1/services/{sid}/status", headers=auth).json()
    assert (now["state"], now["health"]) == ("stopped", "stopped")
    service.reload()
    assert service.attrs["Spec"]["Mode"]["Replicated"]["Replicas"] == 0
    assert h.client.delete(f"/api/v1/services/{sid}", headers=auth).status_code == 204
    assert engine.services.list(filters={"label": f"wakedock.managed={installation}"}) == []


def test_factory_builds_each_runtime() -> None:
    assert make_runtime(DockerSettings()).kind == "engine"
    assert make_runtime(DockerSettings(runtime="swarm")).kind == "swarm"
