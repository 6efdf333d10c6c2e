"""What the tests on the real Docker engine share: the engine, a user-defined bridge network per
test, a per-test installation whose containers are removed after, a harness on the engine
runtime, service specs and a few look-ups.

Every container a test creates goes on the test's own network (`network_mode` in a spec, the
`network` argument of docker-py), never on Docker's default bridge; ports are still published
on 127.0.0.1 only and reached there. tests/integration/conftest.py and tests/browser/conftest.py
offer the fixtures; `database_url` (SQLite only) and `h` change what a module's harness is, so a
module opts into them by importing them (`from support.engine import database_url, h`), as the
proxy tests do with `support.proxy`.
"""

from __future__ import annotations

import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
import yaml

from conftest import Harness
from support.docker_images import TEST_IMAGE, docker_client, ensure_python_image, ensure_test_image
from support.server import run_cli
from wakedock.runtime.base import ContainerRuntime, WorkloadChange
from wakedock.runtime.docker_engine import DockerEngineRuntime

SOCKET = "unix:///var/run/docker.sock"
# busybox httpd serving a page it writes into the tmpfs (the root filesystem is read-only), after
# one line in its log. `exec`: httpd is the command's PID 1, which ignores SIGTERM without an init.
SERVE = [
    "/bin/sh",
    "-c",
    "echo service-log-line; echo ok > /tmp/index.html && exec httpd -f -p 8080 -h /tmp",
]
# Probed every second: a test waits seconds, not the production default's half-minute.
HTTP_READINESS: dict[str, Any] = {
    "type": "http",
    "path": "/index.html",
    "port": 8080,
    "interval_s": 1,
    "timeout_s": 2,
    "retries": 3,
}


@pytest.fixture(scope="module")
def engine() -> docker.DockerClient:
    """The local engine (skip, or fail in CI, without one), with the busybox test image."""
    client = docker_client()
    ensure_test_image(client)
    return client


@pytest.fixture(scope="module")
def python_image(engine: docker.DockerClient) -> str:
    """The image of tests/support/apps/testapp.py, built from the host's Python once."""
    return ensure_python_image(engine)


@pytest.fixture
def network(engine: docker.DockerClient) -> Iterator[str]:
    """A user-defined bridge for this test's containers, removed after them."""
    created = engine.networks.create(f"wd-it-net-{secrets.token_hex(4)}", driver="bridge")
    yield str(created.name)
    # Whatever a failed test left on it: the name is this test's own, so these are its own.
    created.reload()
    for container in created.containers:
        container.remove(force=True)
    created.remove()


@pytest.fixture
def installation(engine: docker.DockerClient, network: str) -> Iterator[str]:
    """A per-test installation name; its containers are removed after the test (and, since this
    fixture asks for `network`, before that network is)."""
    name = f"wd-it-{secrets.token_hex(4)}"
    yield name
    for container in engine.containers.list(
        all=True, filters={"label": f"wakedock.managed={name}"}
    ):
        container.remove(force=True)


AddApp = Callable[..., None]


@pytest.fixture
def add_app(python_image: str, network: str) -> AddApp:
    """`add_app(data, env, name, app_env=None, **fields)`: the Python test app, public, stopped
    after 3 idle seconds (any field overridden), on this test's network, added with the CLI."""

    def add(
        data: Path,
        env: dict[str, str],
        name: str,
        app_env: dict[str, str] | None = None,
        **fields: Any,
    ) -> None:
        add_by_cli(data, env, app_spec(python_image, name, network, app_env, **fields))

    return add


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    # The engine is what these tests are about: one database backend is enough.
    return f"sqlite:///{tmp_path / 'wakedock.db'}"


@pytest.fixture
def h(make_harness: Callable[..., Harness], installation: str) -> Harness:
    """The app in process, its services launched by the Docker Engine runtime."""
    runtime = DockerEngineRuntime(base_url=SOCKET, installation=installation)
    return make_harness(runtime=runtime, docker={"installation": installation})


def busybox_spec(name: str, network: str, **extra: Any) -> dict[str, Any]:
    """A busybox web server on port 8080 of the test's network (override any field)."""
    return {
        "name": name,
        "image": TEST_IMAGE,
        "command": SERVE,
        "network_mode": network,
        "ports": [{"container_port": 8080}],
        "readiness": dict(HTTP_READINESS),
        **extra,
    }


def app_spec(
    image: str, name: str, network: str, app_env: dict[str, str] | None = None, **fields: Any
) -> dict[str, Any]:
    """The Python test app on `network`, public, stopped after 3 idle seconds (any field
    overridden)."""
    return {
        "name": name,
        "image": image,
        "network_mode": network,
        "ports": [{"container_port": 8080}],
        "readiness": {"type": "http", "port": 8080, "path": "/", "interval_s": 1},
        "access": {"policy": "public"},
        "idle_timeout_s": 3,
        "env": app_env or {},
        **fields,
    }


def add_by_cli(data: Path, env: dict[str, str], spec: dict[str, Any]) -> None:
    """`wakedock service add` of `spec` written as YAML, as an operator would."""
    path = data.parent / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    added = run_cli(data, "service", "add", str(path), env=env)
    assert added.returncode == 0, added.stderr


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def container_of(engine: docker.DockerClient, installation: str, name: str) -> Any:
    """The one container of service `name` in this installation."""
    [found] = engine.containers.list(
        all=True,
        filters={"label": [f"wakedock.managed={installation}", f"wakedock.service={name}"]},
    )
    return found


@contextmanager
def followed_changes(runtime: ContainerRuntime) -> Iterator[queue.Queue[WorkloadChange]]:
    """The runtime's followed changes (`follow()`), read on a thread as the discovery watcher
    does; the stream is closed after."""
    seen: queue.Queue[WorkloadChange] = queue.Queue()
    stream = runtime.follow()
    reader = threading.Thread(target=lambda: [seen.put(c) for c in stream], daemon=True)
    reader.start()
    try:
        yield seen
    finally:
        stream.close()
        reader.join(10)


@contextmanager
def two_bridges(engine: docker.DockerClient, prefix: str) -> Iterator[tuple[str, str]]:
    """Two user-defined bridges (a `services` one, for docker.network, and an `other` one);
    whatever is left on them is removed with them."""
    token = secrets.token_hex(3)
    created = [
        engine.networks.create(f"{prefix}{token}-{role}", driver="bridge")
        for role in ("services", "other")
    ]
    try:
        yield str(created[0].name), str(created[1].name)
    finally:
        for network in created:
            network.reload()
            for container in network.containers:
                container.remove(force=True)
            network.remove()


def read_until(
    seen: queue.Queue[WorkloadChange], ref: str, *actions: str, timeout: float = 30
) -> list[WorkloadChange]:
    """Every change read from `seen` up to the first of `actions` on `ref` (included); fails
    when none comes within `timeout` seconds of the last change read."""
    read: list[WorkloadChange] = []
    while True:
        try:
            change = seen.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no {actions} of {ref} in {timeout} s; only {read}") from None
        read.append(change)
        if change.ref == ref and change.action in actions:
            return read
