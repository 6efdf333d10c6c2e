"""What the re-imported engine tests do not cover, on Podman: live discovery's event stream
(create, rename, destroy of a labelled container), label discovery, the published endpoint
WakeDock proxies to, resource statistics and logs."""

from __future__ import annotations

import queue
import urllib.request
from collections.abc import Iterator

import docker
import pytest

from integration.test_docker_engine import _spec, _wait_healthy
from support.docker_images import TEST_IMAGE
from support.engine import followed_changes, read_until
from support.podman import Podman
from wakedock.runtime.base import WorkloadChange
from wakedock.runtime.docker_engine import DockerEngineRuntime
from wakedock.services.launch import launch_of

pytestmark = pytest.mark.integration


@pytest.fixture
def runtime(podman: Podman, installation: str) -> DockerEngineRuntime:
    return DockerEngineRuntime(base_url=podman.url, installation=installation)


@pytest.fixture
def changes(runtime: DockerEngineRuntime) -> Iterator[queue.Queue[WorkloadChange]]:
    with followed_changes(runtime) as seen:
        yield seen


def test_a_labelled_container_is_followed_and_discovered(
    engine: docker.DockerClient,
    runtime: DockerEngineRuntime,
    changes: queue.Queue[WorkloadChange],
    network: str,
) -> None:
    labels = {"wakedock.enable": "true", "wakedock.port": "8080"}
    created = engine.containers.create(
        TEST_IMAGE, ["sleep", "300"], network=network, labels=labels, name="wd-podman-found"
    )
    try:
        read_until(changes, created.id, "create")
        assert created.id in [w.ref for w in runtime.discover()]
        found = runtime.discovered(created.id)
        assert found is not None and found.labels["wakedock.port"] == "8080"
        created.rename("wd-podman-renamed")
        read_until(changes, created.id, "rename")
    finally:
        created.remove(force=True)
    # Docker says `destroy`, Podman `remove`: the watcher must hear of it either way.
    read_until(changes, created.id, "destroy", "remove")
    assert runtime.discovered(created.id) is None


def test_endpoint_stats_and_logs_of_a_running_service(
    runtime: DockerEngineRuntime, network: str
) -> None:
    container_id = runtime.create(launch_of(_spec("served", network), {}))
    runtime.start(container_id)
    _wait_healthy(runtime, container_id)
    endpoint = runtime.endpoint(container_id, 8080)
    assert endpoint.host == "127.0.0.1"
    url = f"http://127.0.0.1:{endpoint.port}/index.html"
    with urllib.request.urlopen(url, timeout=5) as reply:
        assert reply.read().strip() == b"ok"
    stats = runtime.stats(container_id)
    assert 0 < stats.memory_bytes <= stats.memory_limit_bytes == 256 * 1024 * 1024
    assert "service-log-line" in runtime.logs(container_id, tail=10)
    runtime.remove(container_id)
