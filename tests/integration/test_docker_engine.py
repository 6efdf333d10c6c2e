"""The Docker Engine runtime on the real engine: hardened launches seen in `docker inspect`,
lifecycle, unmanaged containers left alone, and errors a user can act on."""

from __future__ import annotations

import time
import urllib.request
from typing import Any

import docker
import docker.errors
import pytest

from support.docker_images import TEST_IMAGE
from support.engine import SOCKET, busybox_spec
from wakedock.runtime.base import (
    ContainerNotFound,
    ImageMissing,
    NotManaged,
    RuntimeUnavailable,
    State,
)
from wakedock.runtime.docker_engine import DockerEngineRuntime
from wakedock.services.launch import launch_of
from wakedock.services.spec import ServiceSpec

pytestmark = pytest.mark.integration


@pytest.fixture
def runtime(installation: str) -> DockerEngineRuntime:
    return DockerEngineRuntime(base_url=SOCKET, installation=installation)


def _spec(name: str, network: str, **extra: Any) -> ServiceSpec:
    return ServiceSpec.model_validate(busybox_spec(name, network, **extra))


def _wait_healthy(runtime: DockerEngineRuntime, container_id: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = runtime.status(container_id)
        if status.health == "healthy":
            return
        time.sleep(0.3)
    raise AssertionError(f"never healthy: {runtime.status(container_id)}")


def _holds_no_capability(
    engine: docker.DockerClient, container_id: str, host: dict[str, Any]
) -> None:
    """`cap_drop: ALL` really dropped everything. Docker reports it as ["ALL"]; Podman as the
    list of capabilities it removed (tests/podman): either way the kernel has the last word,
    and PID 1 holds no capability, not even in its bounding set."""
    assert host["CapDrop"] == ["ALL"] or "SETUID" in host["CapDrop"]
    # Read on the host (the engine is local): no `exec`, which would leave a process behind.
    pid = engine.api.inspect_container(container_id)["State"]["Pid"]
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        lines = status.read().splitlines()
    sets = {
        key: int(value, 16)
        for key, _, value in (line.partition(":\t") for line in lines)
        if key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
    }
    assert sets == dict.fromkeys(("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"), 0)


def test_launch_is_hardened_in_docker_inspect(
    engine: docker.DockerClient, runtime: DockerEngineRuntime, installation: str, network: str
) -> None:
    container_id = runtime.create(launch_of(_spec("hardened", network), {"GREETING": "hello"}))
    runtime.start(container_id)
    _wait_healthy(runtime, container_id)
    attrs = engine.api.inspect_container(container_id)
    host = attrs["HostConfig"]
    _holds_no_capability(engine, container_id, host)
    assert not host.get("CapAdd")
    assert any(opt.startswith("no-new-privileges") for opt in host["SecurityOpt"])
    assert host["ReadonlyRootfs"] is True
    assert "/tmp" in host["Tmpfs"]
    assert host["Memory"] == 256 * 1024 * 1024
    assert host["NanoCpus"] == 500_000_000
    assert host["PidsLimit"] == 256
    assert host["Privileged"] is False
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 5}
    assert host["NetworkMode"] != "host"
    # The test's own bridge, not the default one. Podman reports its kind ("bridge") as the
    # mode; the attached networks say which.
    assert host["NetworkMode"] in (network, "bridge")
    assert set(attrs["NetworkSettings"]["Networks"]) == {network}
    assert host["PidMode"] in ("", "private")
    # Never the host's: Podman's default is "shareable", its own namespace that only another
    # container created with `--ipc container:` could join.
    assert host["IpcMode"] in ("", "private", "none", "shareable")
    assert host["UTSMode"] in ("", "private")
    assert not host.get("Devices")
    assert all(
        m.get("Source") not in ("/var/run/docker.sock", "/run/docker.sock") for m in attrs["Mounts"]
    )
    bindings = [b for port in host["PortBindings"].values() for b in port]
    assert bindings
    assert {b["HostIp"] for b in bindings} == {"127.0.0.1"}
    assert attrs["Config"]["Healthcheck"]["Test"]
    assert attrs["Config"]["Labels"]["wakedock.managed"] == installation
    assert "GREETING=hello" in attrs["Config"]["Env"]
    # Published on loopback only, and really serving.
    published = attrs["NetworkSettings"]["Ports"]["8080/tcp"]
    assert {p["HostIp"] for p in published} == {"127.0.0.1"}
    port = published[0]["HostPort"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=5) as reply:
        assert reply.read().strip() == b"ok"
    runtime.remove(container_id)


def test_lifecycle_stop_pause_start_remove(runtime: DockerEngineRuntime, network: str) -> None:
    container_id = runtime.create(launch_of(_spec("lifecycle", network), {}))
    assert runtime.status(container_id).state is State.STOPPED
    runtime.start(container_id)
    assert runtime.status(container_id).state is State.RUNNING
    runtime.stop(container_id, pause=True)
    assert runtime.status(container_id).state is State.PAUSED
    runtime.start(container_id)
    assert runtime.status(container_id).state is State.RUNNING
    runtime.stop(container_id)
    assert runtime.status(container_id).state is State.STOPPED
    assert "service-log-line" in runtime.logs(container_id, tail=10)
    runtime.remove(container_id)
    with pytest.raises(ContainerNotFound):
        runtime.status(container_id)
    runtime.remove(container_id)  # removing twice is not an error


def test_unmanaged_container_is_never_touched(
    engine: docker.DockerClient, runtime: DockerEngineRuntime, network: str
) -> None:
    bystander = engine.containers.run(
        TEST_IMAGE,
        ["sleep", "300"],
        detach=True,
        name=f"bystander-{int(time.time() * 1000)}",
        network=network,
    )
    try:
        for operation in (runtime.stop, runtime.start, runtime.status, runtime.remove):
            with pytest.raises(NotManaged):
                operation(bystander.id)
        bystander.reload()
        assert bystander.status == "running"
    finally:
        bystander.remove(force=True)


def test_opted_in_container_is_managed(
    engine: docker.DockerClient, runtime: DockerEngineRuntime, network: str
) -> None:
    opted = engine.containers.create(
        TEST_IMAGE, ["sleep", "300"], network=network, labels={"wakedock.enable": "true"}
    )
    try:
        runtime.start(opted.id)
        assert runtime.status(opted.id).state is State.RUNNING
        runtime.stop(opted.id)
        assert runtime.status(opted.id).state is State.STOPPED
    finally:
        opted.remove(force=True)


def test_missing_image_is_refused_without_repeating_it(
    runtime: DockerEngineRuntime, network: str
) -> None:
    with pytest.raises(ImageMissing, match="not present on the Docker host") as caught:
        runtime.create(launch_of(_spec("orphan", network, image="wakedock-test/never-built:9"), {}))
    assert "never-built" not in caught.value.detail and caught.value.extra == {"field": "image"}


def test_unreachable_daemon_is_a_clear_503(engine: docker.DockerClient) -> None:
    nowhere = DockerEngineRuntime(
        base_url="unix:///tmp/no-docker-here.sock", installation="wakedock-tests"
    )
    with pytest.raises(RuntimeUnavailable) as caught:
        nowhere.status("anything")
    assert caught.value.status_code == 503
    assert "Docker daemon" in caught.value.detail
