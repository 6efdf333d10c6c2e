"""The Docker Swarm runtime on a real single-node Swarm: hardened services seen in `docker service
inspect` and `docker inspect`, scaling 0 <-> 1, unmanaged services left alone, and clear errors."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import docker
import docker.errors
import pytest
from docker.types import ContainerSpec, ServiceMode, TaskTemplate

from support.docker_images import TEST_IMAGE, docker_client, ensure_test_image
from support.engine import HTTP_READINESS
from support.swarm import ensure_swarm_manager, overlay_network, remove_services
from wakedock.runtime.base import (
    ContainerNotFound,
    ImageMissing,
    InvalidState,
    NotManaged,
    RuntimeUnavailable,
    State,
)
from wakedock.runtime.docker_swarm import DockerSwarmRuntime
from wakedock.services.launch import launch_of
from wakedock.services.spec import ServiceSpec

pytestmark = pytest.mark.integration

# Per run: another run on the same engine (CI's, say) has its own services, left alone.
INSTALLATION = f"wakedock-swarm-tests-{secrets.token_hex(3)}"
# Services the tests create directly (not through the runtime) carry this name prefix.
BYSTANDER_PREFIX = f"wdswarmtest-{secrets.token_hex(3)}-"
DEADLINE_S = 90
MIB = 1024 * 1024
# busybox httpd serving a page written into the tmpfs (the root filesystem is read-only). The
# init forwards SIGTERM to the shell, which exits: scaling to 0 does not wait out the grace period.
SERVE = [
    "/bin/sh",
    "-c",
    "echo serving-from-tmpfs; echo ok > /tmp/index.html && trap 'exit 0' TERM; "
    "httpd -f -p 8080 -h /tmp & wait",
]
T = TypeVar("T")


@pytest.fixture(scope="module")
def engine() -> docker.DockerClient:
    client = docker_client()
    ensure_swarm_manager(client)
    ensure_test_image(client)
    return client


@pytest.fixture(scope="module")
def network(engine: docker.DockerClient) -> Iterator[str]:
    """The module's overlay network; its services are removed first, the network after."""
    with overlay_network(engine) as name:
        yield name
        remove_services(
            engine, label=f"wakedock.managed={INSTALLATION}", name_prefix=BYSTANDER_PREFIX
        )


@pytest.fixture
def runtime(network: str) -> DockerSwarmRuntime:
    """Asks for `network`: whatever a test creates is removed with the module's services."""
    return DockerSwarmRuntime(base_url="unix:///var/run/docker.sock", installation=INSTALLATION)


def _spec(name: str, network: str, **extra: Any) -> ServiceSpec:
    return ServiceSpec.model_validate(
        {
            "name": name,
            "image": TEST_IMAGE,
            "command": SERVE,
            "network_mode": network,
            "readiness": dict(HTTP_READINESS),
            **extra,
        }
    )


def _wait(probe: Callable[[], T | None], what: str) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after the deadline."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"{what} not reached within {DEADLINE_S}s")


def _wait_healthy(runtime: DockerSwarmRuntime, ref: str) -> None:
    def healthy() -> bool:
        status = runtime.status(ref)
        return status.state is State.RUNNING and status.health == "healthy"

    _wait(healthy, f"RUNNING and healthy (last: {runtime.status(ref)})")


def _running_task_containers(engine: docker.DockerClient, service_id: str) -> list[Any]:
    return engine.containers.list(filters={"label": f"com.docker.swarm.service.id={service_id}"})


def _replicas(engine: docker.DockerClient, service_id: str) -> int:
    return int(engine.api.inspect_service(service_id)["Spec"]["Mode"]["Replicated"]["Replicas"])


def _exec(engine: docker.DockerClient, container_id: str, *command: str) -> str:
    created = engine.api.exec_create(container_id, list(command))
    return bytes(engine.api.exec_start(created)).decode()


def test_lifecycle_is_hardened_and_scales_between_0_and_1(
    engine: docker.DockerClient, runtime: DockerSwarmRuntime, network: str
) -> None:
    lifecycle = _spec(
        "lifecycle", network, cap_add=["CHOWN"], stop_signal="TERM", stop_timeout_s=20
    )
    ref = runtime.create(launch_of(lifecycle, {"GREETING": "hello"}))
    assert runtime.status(ref).state is State.STOPPED
    assert _replicas(engine, ref) == 0
    assert runtime.find("lifecycle") == ref

    runtime.start(ref)
    _wait_healthy(runtime, ref)
    service = engine.api.inspect_service(ref)
    spec = service["Spec"]
    assert spec["Name"] == f"{INSTALLATION}-lifecycle"
    assert spec["Mode"]["Replicated"]["Replicas"] == 1
    assert spec["Labels"] == {"wakedock.managed": INSTALLATION, "wakedock.service": "lifecycle"}
    task = spec["TaskTemplate"]
    container_spec = task["ContainerSpec"]
    assert container_spec["Init"] is True
    assert container_spec["StopSignal"] == "SIGTERM"
    assert container_spec["StopGracePeriod"] == 20 * 1_000_000_000
    assert task["RestartPolicy"]["Condition"] == "on-failure"
    assert task["RestartPolicy"]["MaxAttempts"] == 5
    assert task["Resources"]["Limits"] == {
        "NanoCPUs": 500_000_000,
        "MemoryBytes": 256 * MIB,
        "Pids": 256,
    }
    # Pinned to the local image id: Swarm would otherwise try its registry before every start.
    assert task["ContainerSpec"]["Image"] == engine.images.get(TEST_IMAGE).id
    # Nothing published: Swarm can only publish on every interface.
    assert not (spec.get("EndpointSpec") or {}).get("Ports")
    assert not (service.get("Endpoint") or {}).get("Ports")

    inspected = runtime.inspect(ref)
    assert len(inspected) == 1
    attrs = inspected[0]
    host = attrs["HostConfig"]
    assert host["CapDrop"] == ["ALL"]
    assert host["CapAdd"] == ["CHOWN"]
    assert host["Init"] is True
    assert attrs["Config"]["StopSignal"] == "SIGTERM"
    assert host["ReadonlyRootfs"] is True
    assert host["Privileged"] is False
    assert host["Memory"] == 256 * MIB
    assert host["NanoCpus"] == 500_000_000
    assert host["PidsLimit"] == 256
    assert host["NetworkMode"] != "host"
    # On the module's overlay network only: not on Docker's default bridge.
    assert set(attrs["NetworkSettings"]["Networks"]) == {network}
    assert not host.get("Devices")
    assert not host.get("PortBindings")
    assert not attrs["NetworkSettings"].get("Ports")
    assert attrs["Config"]["Healthcheck"]["Test"][0] == "CMD-SHELL"
    assert attrs["Config"]["Labels"]["wakedock.managed"] == INSTALLATION
    assert attrs["Config"]["Labels"]["wakedock.service"] == "lifecycle"
    assert "GREETING=hello" in attrs["Config"]["Env"]
    assert [(m["Type"], m["Target"]) for m in host["Mounts"]] == [("tmpfs", "/tmp")]
    tmp_mount = next(
        line
        for line in _exec(engine, attrs["Id"], "cat", "/proc/mounts").splitlines()
        if line.split()[1] == "/tmp"
    )
    assert {"noexec", "nosuid", "size=65536k"} <= set(tmp_mount.split()[3].split(","))
    if tuple(int(p) for p in engine.api.api_version.split(".")) >= (1, 44):
        status = _exec(engine, attrs["Id"], "cat", "/proc/1/status")
        assert "NoNewPrivs:\t1" in status

    assert "serving-from-tmpfs" in runtime.logs(ref, tail=10)
    usage = runtime.stats(ref)
    assert usage.memory_bytes > 0
    assert usage.memory_limit_bytes == 256 * MIB

    runtime.stop(ref)
    assert runtime.status(ref).state is State.STOPPED
    assert runtime.status(ref).health == "stopped"
    assert _replicas(engine, ref) == 0
    _wait(lambda: not _running_task_containers(engine, ref), "no running task container")
    assert runtime.inspect(ref) == []
    with pytest.raises(InvalidState):
        runtime.stats(ref)

    runtime.start(ref)
    _wait_healthy(runtime, ref)
    runtime.stop(ref, pause=True)  # Swarm cannot pause: scaled to 0 as well
    assert _replicas(engine, ref) == 0
    assert runtime.status(ref).state is State.STOPPED

    runtime.remove(ref)
    with pytest.raises(docker.errors.NotFound):
        engine.api.inspect_service(ref)
    with pytest.raises(ContainerNotFound):
        runtime.status(ref)
    assert runtime.find("lifecycle") is None
    runtime.remove(ref)  # removing twice is not an error


def _bystander(engine: docker.DockerClient, network: str, **labels: str) -> str:
    # By image id, as the runtime does: a tag would make Swarm try its registry first.
    image = engine.images.get(TEST_IMAGE).id
    created = engine.api.create_service(
        TaskTemplate(ContainerSpec(image, args=["sleep", "300"]), networks=[network]),
        name=f"{BYSTANDER_PREFIX}{secrets.token_hex(6)}",
        labels=labels,
        mode=ServiceMode("replicated", replicas=1),
    )
    return str(created["ID"])


def _running_task(engine: docker.DockerClient, service_id: str) -> str | None:
    tasks = engine.api.tasks(filters={"service": service_id, "desired-state": "running"})
    running = [t["ID"] for t in tasks if t["Status"]["State"] == "running"]
    return running[0] if running else None


def test_unmanaged_service_is_never_touched_and_opt_in_is_discovered(
    engine: docker.DockerClient, runtime: DockerSwarmRuntime, network: str
) -> None:
    bystander = _bystander(engine, network)
    opted = _bystander(engine, network, **{"wakedock.enable": "true"})
    task = _wait(lambda: _running_task(engine, bystander), "the bystander's task running")
    version = engine.api.inspect_service(bystander)["Version"]["Index"]

    operations: list[Callable[[str], object]] = [
        runtime.stop,
        runtime.start,
        runtime.status,
        runtime.remove,
        lambda ref: runtime.logs(ref, 10),
        runtime.stats,
        runtime.inspect,
    ]
    for operation in operations:
        with pytest.raises(NotManaged):
            operation(bystander)
    after = engine.api.inspect_service(bystander)
    assert after["Version"]["Index"] == version
    assert after["Spec"]["Mode"]["Replicated"]["Replicas"] == 1
    assert _running_task(engine, bystander) == task

    found = {w.ref: w for w in runtime.discover()}
    assert bystander not in found
    assert opted in found
    assert found[opted].name.startswith(BYSTANDER_PREFIX)
    assert found[opted].labels["wakedock.enable"] == "true"
    assert found[opted].image == engine.images.get(TEST_IMAGE).id
    # Opted in means operated: scaled to 0 and back.
    runtime.stop(opted)
    assert _replicas(engine, opted) == 0
    assert runtime.status(opted).state is State.STOPPED
    runtime.start(opted)
    assert _replicas(engine, opted) == 1


def test_service_that_keeps_crashing_is_stopped_and_can_be_woken_again(
    engine: docker.DockerClient, runtime: DockerSwarmRuntime, network: str
) -> None:
    crash = _spec(
        "crashloop",
        network,
        command=["/bin/sh", "-c", "echo crashing; exit 3"],
        readiness={"type": "tcp", "port": 8080, "interval_s": 1, "timeout_s": 1, "retries": 1},
    )
    ref = runtime.create(launch_of(crash, {}))
    runtime.start(ref)
    # Swarm retries on failure 5 times (1 s apart), then gives up: the service reads as stopped.
    _wait(lambda: runtime.status(ref).state is State.STOPPED, "Swarm giving up")
    assert _replicas(engine, ref) == 1
    failed = {t["ID"] for t in engine.api.tasks(filters={"service": ref})}
    runtime.start(ref)  # reschedules although the replica count is already 1
    _wait(
        lambda: {t["ID"] for t in engine.api.tasks(filters={"service": ref})} - failed,
        "a new task after waking the service again",
    )
    runtime.remove(ref)


def test_missing_image_and_policy_violation_create_nothing(
    engine: docker.DockerClient, runtime: DockerSwarmRuntime, network: str
) -> None:
    with pytest.raises(ImageMissing, match="not present on the Docker host"):
        runtime.create(launch_of(_spec("orphan", network, image="wakedock-test/never-built:9"), {}))
    with pytest.raises(ValueError, match="privileged"):
        runtime.create(launch_of(_spec("escalate", network, privileged=True), {}))
    with pytest.raises(ValueError, match="secret references not resolved"):
        runtime.create(launch_of(_spec("unresolved", network), {"TOKEN": "secret:app/db#password"}))
    for name in ("orphan", "escalate", "unresolved"):
        assert runtime.find(name) is None
        with pytest.raises(docker.errors.NotFound):
            engine.api.inspect_service(f"{INSTALLATION}-{name}")


def test_unreachable_daemon_is_a_clear_503(engine: docker.DockerClient) -> None:
    nowhere = DockerSwarmRuntime(
        base_url="unix:///tmp/no-docker-here.sock", installation=INSTALLATION
    )
    with pytest.raises(RuntimeUnavailable) as caught:
        nowhere.status("anything")
    assert caught.value.status_code == 503
    assert "Docker daemon" in caught.value.detail
