"""Attacks through `wakedock socket-proxy` with only its socket (docker-py as the attacker's
client, the real engine behind): each is refused with 403 and the engine's error shape, logged
once with method, path and reason, and changes nothing in the engine."""

from __future__ import annotations

import io
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import docker
import docker.errors
import pytest
from docker.types import Mount

from support.docker_images import TEST_IMAGE
from support.socket_proxy import SocketProxy
from wakedock.runtime.hardening import container_name

pytestmark = [pytest.mark.integration, pytest.mark.security]


def _refused(proxy: SocketProxy, action: Callable[[], Any], path_part: str) -> str:
    """Run `action`; it must be refused 403 by the proxy, and each request it made logged
    (docker-py's `logs` asks twice: the logs, then whether the container has a TTY)."""
    before = len(proxy.refusals())
    with pytest.raises(docker.errors.APIError) as caught:
        action()
    assert caught.value.status_code == 403
    message = str(caught.value.explanation)
    assert message.startswith("socket-proxy: ")
    logged = proxy.refusals()[before:]
    assert logged and all(path_part in line["path"] for line in logged), logged
    assert all(set(line) == {"event", "method", "path", "reason"} for line in logged)
    return message


@pytest.fixture
def labelled(engine: docker.DockerClient, installation: str, network: str) -> Iterator[Any]:
    """A running container of this installation, made directly on the engine."""
    container = engine.containers.run(
        TEST_IMAGE,
        ["sleep", "300"],
        detach=True,
        name=container_name(installation, f"victim{secrets.token_hex(2)}"),
        network=network,
        labels={"wakedock.managed": installation, "wakedock.service": "victim"},
    )
    yield container
    container.remove(force=True)


@pytest.fixture
def bystander(engine: docker.DockerClient, network: str) -> Iterator[Any]:
    """Someone else's running container, without WakeDock's labels."""
    container = engine.containers.run(
        TEST_IMAGE,
        ["sleep", "300"],
        detach=True,
        name=f"wd-sockproxy-bystander-{secrets.token_hex(3)}",
        network=network,
    )
    yield container
    container.remove(force=True)


def _create_kwargs(installation: str, network_name: str, **extra: Any) -> dict[str, Any]:
    """What a WakeDock create looks like (labels, name, hardening), with `extra` on top."""
    service = f"evil{secrets.token_hex(2)}"
    base = {
        "image": TEST_IMAGE,
        "command": ["sleep", "300"],
        "name": container_name(installation, service),
        "labels": {"wakedock.managed": installation, "wakedock.service": service},
        "network": network_name,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "mem_limit": "64m",
        "pids_limit": 64,
        "environment": {"API_TOKEN": "wd-sockproxy-not-a-secret-4711"},
    }
    return {key: value for key, value in {**base, **extra}.items() if value is not None}


def _no_container_of(engine: docker.DockerClient, name: str) -> bool:
    return not engine.containers.list(all=True, filters={"name": f"^/{name}$"})


def test_a_create_as_wakedock_sends_it_passes(
    engine: docker.DockerClient, attacker: docker.DockerClient, installation: str, network: str
) -> None:
    """The control: without the dangerous settings below, the same create is accepted."""
    kwargs = _create_kwargs(installation, network)
    created = attacker.containers.create(**kwargs)
    assert engine.containers.get(created.id).labels["wakedock.managed"] == installation


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"privileged": True}, "privileged containers are refused"),
        ({"cap_add": ["SYS_ADMIN"]}, "cap_add[0]: this capability is not allowed"),
        ({"cap_drop": ["NET_RAW"]}, "every capability must be dropped"),
        ({"security_opt": ["seccomp=unconfined", "no-new-privileges"]}, "no unconfined"),
        ({"security_opt": ["apparmor=unconfined", "no-new-privileges"]}, "no unconfined"),
        ({"security_opt": []}, "no-new-privileges is required"),
        ({"network": None, "network_mode": "host"}, "network_mode 'host'"),
        ({"pid_mode": "host"}, "pid_mode 'host'"),
        ({"ipc_mode": "host"}, "ipc_mode 'host'"),
        ({"userns_mode": "host"}, "HostConfig.UsernsMode: not a setting WakeDock uses"),
        ({"devices": ["/dev/mem:/dev/mem:rwm"]}, "host devices are not allowed"),
        ({"volumes": {"/var/run/docker.sock": {"bind": "/s", "mode": "ro"}}}, "Docker socket"),
        ({"volumes": {"//run//docker.sock": {"bind": "/s", "mode": "rw"}}}, "Docker socket"),
        ({"volumes": {"/var/run": {"bind": "/host-run", "mode": "ro"}}}, "Docker socket"),
        (
            {"mounts": [Mount("/s", "/var/run/docker.sock", type="bind", read_only=True)]},
            "Docker socket",
        ),
        ({"volumes": {"/etc": {"bind": "/host-etc", "mode": "ro"}}}, "sensitive host path"),
        ({"volumes": {"otherapp_data": {"bind": "/d", "mode": "rw"}}}, "another service"),
        # Refused before the engine sees it: nothing is ever bound there.
        ({"ports": {"80/tcp": ("0.0.0.0", 18080)}}, "published on 127.0.0.1 only"),  # noqa: S104
        ({"volumes_from": ["someone-else"]}, "HostConfig.VolumesFrom"),
        ({"labels": {"wakedock.enable": "true"}}, "wakedock.managed and wakedock.service"),
        ({"mem_limit": None}, "HostConfig.Memory: a limit is required"),
        ({"pids_limit": -1}, "HostConfig.PidsLimit: a limit is required"),
    ],
)
def test_a_dangerous_create_is_refused_and_logged(
    engine: docker.DockerClient,
    attacker: docker.DockerClient,
    proxy: SocketProxy,
    installation: str,
    network: str,
    extra: dict[str, Any],
    reason: str,
) -> None:
    kwargs = _create_kwargs(installation, network, **extra)
    message = _refused(proxy, lambda: attacker.containers.create(**kwargs), "/containers/create")
    assert reason in message
    assert _no_container_of(engine, kwargs["name"])
    # The body's environment (a token, here) is never logged.
    assert "wd-sockproxy-not-a-secret-4711" not in proxy.log()


def test_unlabelled_container_cannot_be_touched(
    attacker: docker.DockerClient, proxy: SocketProxy, bystander: Any
) -> None:
    api = attacker.api
    for action in (
        lambda: api.inspect_container(bystander.id),
        lambda: api.inspect_container(bystander.name),  # by name too
        lambda: api.logs(bystander.id),
        lambda: api.stop(bystander.id),
        lambda: api.pause(bystander.id),
        lambda: api.remove_container(bystander.id, force=True),
        lambda: api.stats(bystander.id, stream=False),
    ):
        assert "does not carry WakeDock's labels" in _refused(proxy, action, "/containers/")
    bystander.reload()
    assert bystander.status == "running"
    listed = {c.id for c in attacker.containers.list(all=True)}
    assert bystander.id not in listed


def test_exec_archive_and_attach_are_refused_even_on_a_labelled_container(
    attacker: docker.DockerClient, proxy: SocketProxy, labelled: Any
) -> None:
    api = attacker.api
    _refused(proxy, lambda: api.exec_create(labelled.id, ["id"]), "/exec")
    _refused(proxy, lambda: api.get_archive(labelled.id, "/etc/passwd"), "/archive")
    _refused(proxy, lambda: api.put_archive(labelled.id, "/tmp", b"x" * 1024), "/archive")
    _refused(proxy, lambda: api.attach(labelled.id, stream=False, logs=True), "/attach")
    _refused(proxy, lambda: api.kill(labelled.id), "/kill")
    labelled.reload()
    assert labelled.status == "running"


def test_images_and_the_swarm_cannot_be_changed(
    engine: docker.DockerClient, attacker: docker.DockerClient, proxy: SocketProxy
) -> None:
    api = attacker.api
    tag = f"wd-sockproxy-built:{secrets.token_hex(3)}"
    dockerfile = io.BytesIO(f"FROM {TEST_IMAGE}\nRUN true\n".encode())
    _refused(proxy, lambda: api.pull("busybox", tag="latest"), "/images/create")
    _refused(proxy, lambda: list(api.build(fileobj=dockerfile, tag=tag)), "/build")
    _refused(proxy, lambda: api.init_swarm(advertise_addr="127.0.0.1"), "/swarm/init")
    _refused(proxy, lambda: api.remove_image(TEST_IMAGE), "/images/")
    _refused(proxy, lambda: api.create_volume("wd-sockproxy-vol"), "/volumes/create")
    # Swarm services are not part of the Engine runtime: without --swarm, refused too.
    _refused(proxy, lambda: api.services(), "/services")
    with pytest.raises(docker.errors.ImageNotFound):
        engine.images.get(tag)


def test_events_and_follow_streams_only_show_wakedock_containers(
    engine: docker.DockerClient,
    attacker: docker.DockerClient,
    installation: str,
    network: str,
) -> None:
    since = int(time.time()) - 1
    ours = engine.containers.run(
        TEST_IMAGE,
        ["sh", "-c", "echo first-line; sleep 300"],
        detach=True,
        name=container_name(installation, "streamed"),
        network=network,
        labels={"wakedock.managed": installation, "wakedock.service": "streamed"},
    )
    other = engine.containers.run(
        TEST_IMAGE, ["sleep", "300"], detach=True, name=f"wd-sockproxy-other-{secrets.token_hex(3)}"
    )
    try:
        until = int(time.time()) + 1
        time.sleep(1.5)
        seen = {
            event.get("id")
            for event in attacker.events(since=since, until=until, decode=True)
            if event.get("Type") == "container"
        }
        assert ours.id in seen and other.id not in seen
        # A follow stream is relayed as it comes, and ends when its client hangs up.
        stream = attacker.api.logs(ours.id, stream=True, follow=True)
        assert next(iter(stream)).strip() == b"first-line"
        stream.close()
    finally:
        other.remove(force=True)


def _raw_create(proxy: SocketProxy, name: str, body: str) -> bytes:
    data = body.encode()
    return proxy.raw(
        f"POST /v1.41/containers/create?name={name} HTTP/1.1\r\nHost: docker\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode()
        + data
    )


@pytest.mark.parametrize(
    "host_config",
    [
        # The engine's JSON decoder ignores the case of field names, and the last duplicate wins.
        '{"privileged": true, "CapDrop": ["ALL"], "SecurityOpt": ["no-new-privileges"]}',
        '{"Privileged": false, "PRIVILEGED": true, "CapDrop": ["ALL"],'
        ' "SecurityOpt": ["no-new-privileges"]}',
        '{"binds": ["/var/run/docker.sock:/s"], "CapDrop": ["ALL"],'
        ' "SecurityOpt": ["no-new-privileges"]}',
        # Go also folds the Kelvin sign into k: a non-ASCII field name is not guessed at.
        '{"Privileged": false, "CapDrop": ["ALL"], "SecurityOpt": ["no-new-privileges"],'
        ' "UsernsMode": "", "\\u212aernelMemory": 1}',
    ],
)
def test_field_name_tricks_in_a_create_are_refused(
    engine: docker.DockerClient, proxy: SocketProxy, installation: str, host_config: str
) -> None:
    service = f"trick{secrets.token_hex(2)}"
    name = container_name(installation, service)
    labels = f'{{"wakedock.managed": "{installation}", "wakedock.service": "{service}"}}'
    body = f'{{"Image": "{TEST_IMAGE}", "Labels": {labels}, "HostConfig": {host_config}}}'
    answer = _raw_create(proxy, name, body)
    assert answer.startswith(b"HTTP/1.1 403 "), answer[:300]
    assert _no_container_of(engine, name)


def test_a_start_cannot_carry_a_host_config_on_an_old_api_version(
    engine: docker.DockerClient, proxy: SocketProxy, installation: str, network: str
) -> None:
    """API versions before 1.24 applied a HostConfig sent with `start`: refused, and a current
    version's start is forwarded without the body."""
    created = engine.containers.create(
        TEST_IMAGE,
        ["sleep", "300"],
        name=container_name(installation, "oldapi"),
        network=network,
        labels={"wakedock.managed": installation, "wakedock.service": "oldapi"},
    )
    body = b'{"Privileged": true}'
    for version, status in (("/v1.23", 403), ("", 204)):
        answer = proxy.raw(
            f"POST {version}/containers/{created.id}/start HTTP/1.1\r\nHost: docker\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:300]
    created.reload()
    assert created.status == "running"
    assert created.attrs["HostConfig"]["Privileged"] is False
