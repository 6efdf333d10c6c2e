"""Live discovery through a real `wakedock serve` on the real Docker engine: a labelled
container started after the server appears as a service, a recreate with new labels changes
it, its removal removes it, invalid labels are reported and ignored; and when the engine goes
away (a socket relay WakeDock talks through is cut; dockerd itself is never touched) what
changed meanwhile is picked up once it is back. Every Docker object here is named `wd-disc-`."""

from __future__ import annotations

import contextlib
import re
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx
import pytest
from docker.types import ServiceMode

from conftest import Harness
from support.components import RedisServer
from support.docker_images import TEST_IMAGE
from support.engine import SOCKET, database_url, wait_for  # noqa: F401 - fixture
from support.login import access_token, bearer
from support.server import WakeDockProcess, run_cli, wakedock_server
from support.socket_relay import SocketRelay
from support.swarm import ensure_swarm_manager
from support.workers import WORKERS_START, wait_workers
from wakedock.runtime.docker_swarm import DockerSwarmRuntime
from wakedock.services.watch import DiscoveryWatcher

pytestmark = pytest.mark.integration


@pytest.fixture
def network(engine: docker.DockerClient) -> Iterator[str]:
    """This test's own bridge, removed after the test's containers."""
    created = engine.networks.create(f"wd-disc-net-{secrets.token_hex(4)}", driver="bridge")
    yield str(created.name)
    created.remove()


Labelled = Callable[..., Any]


@pytest.fixture
def labelled(engine: docker.DockerClient, network: str) -> Iterator[Labelled]:
    """`labelled(name, **labels)`: a container its owner opted in, created (not started) on
    this test's network; every one is removed after the test (a created container is not on
    the network's list, so the network's removal would not find it)."""
    names: list[str] = []

    def create(name: str, **labels: str) -> Any:
        names.append(name)
        return engine.containers.create(
            TEST_IMAGE,
            ["sleep", "300"],
            name=name,
            network=network,
            labels={"wakedock.enable": "true", "wakedock.readiness": "tcp:8080", **labels},
        )

    yield create
    for name in names:
        with contextlib.suppress(docker.errors.NotFound):
            engine.containers.get(name).remove(force=True)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def env() -> dict[str, str]:
    return {
        "WAKEDOCK_DOCKER__INSTALLATION": f"wd-disc-{secrets.token_hex(4)}",
        "WAKEDOCK_DOCKER__DISCOVERY_DEBOUNCE_SECONDS": "0.2",
    }


@pytest.fixture
def viewer(data: Path, env: dict[str, str]) -> tuple[str, str]:
    """A viewer created with the CLI (reading services is all these tests do)."""
    password = secrets.token_urlsafe(18)
    created = run_cli(
        data, "user", "create", "vera", "--role", "viewer", "--password-stdin",
        stdin=password + "\n", env=env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    return "vera", password


class Services:
    """The services API as a signed-in viewer reads it."""

    def __init__(self, server: WakeDockProcess, user: tuple[str, str]) -> None:
        self._http = httpx.Client(base_url=server.base_url, verify=server.ssl_context())
        self._auth = bearer(access_token(self._http, *user))

    def named(self, name: str) -> dict[str, Any] | None:
        listed = self._http.get("/api/v1/services", headers=self._auth)
        assert listed.status_code == 200, listed.text
        return next((s for s in listed.json() if s["name"] == name), None)

    def close(self) -> None:
        self._http.close()


def audited(data: Path, name: str) -> list[tuple[str, str]]:
    with sqlite3.connect(data / "wakedock.db") as db:
        rows = db.execute(
            "SELECT type, actor FROM audit_events WHERE target = ? ORDER BY id", (name,)
        )
        return [(r[0], r[1]) for r in rows]


def test_a_labelled_container_appears_changes_and_goes_while_serving(
    data: Path,
    env: dict[str, str],
    viewer: tuple[str, str],
    engine: docker.DockerClient,
    labelled: Labelled,
) -> None:
    name = f"wd-disc-app-{secrets.token_hex(3)}"
    bad = f"wd-disc-bad-{secrets.token_hex(3)}"
    with wakedock_server(data, env=env) as server:
        services = Services(server, viewer)
        try:
            first = labelled(name, **{"wakedock.idle_timeout": "10m"})
            wait_for(lambda: services.named(name) is not None, "the service to appear", 15)
            found = services.named(name)
            assert found is not None
            assert (found["source"], found["spec"]["idle_timeout_s"]) == ("discovered", 600)

            # Its owner recreates it with other labels (what `docker compose up` does).
            first.remove(force=True)
            labelled(
                name,
                **{"wakedock.idle_timeout": "20m", "wakedock.host": "blog.example.com"},
            )

            def changed() -> bool:
                now = services.named(name)
                return now is not None and now["spec"]["idle_timeout_s"] == 1200

            wait_for(changed, "the service to follow its new labels", 15)
            now = services.named(name)
            assert now is not None and now["spec"]["hosts"] == ["blog.example.com"]

            # Invalid labels: reported, and no service at all (not a half-configured one).
            labelled(bad, **{"wakedock.port": "eighty"})
            wait_for(
                lambda: f"container {bad}: wakedock.port: expected a port number" in server.log(),
                "the invalid labels to be reported",
                15,
            )
            assert services.named(bad) is None

            engine.containers.get(name).remove(force=True)
            wait_for(lambda: services.named(name) is None, "the service to go", 15)
        finally:
            services.close()
    trail = audited(data, name)
    assert ("service_discovered", "system:discovery") in trail, trail
    assert trail[-1] == ("service_delete", "system:discovery"), trail
    assert audited(data, bad) == []


def test_after_the_engine_comes_back_what_changed_meanwhile_is_picked_up(
    data: Path,
    env: dict[str, str],
    viewer: tuple[str, str],
    engine: docker.DockerClient,
    labelled: Labelled,
    tmp_path: Path,
) -> None:
    relay = SocketRelay(tmp_path / "docker.sock")
    relay.start()
    before = f"wd-disc-before-{secrets.token_hex(3)}"
    during = f"wd-disc-during-{secrets.token_hex(3)}"
    lost = "the Docker engine's event stream was lost"
    try:
        with wakedock_server(data, env={**env, "WAKEDOCK_DOCKER__URL": relay.url}) as server:
            services = Services(server, viewer)
            try:
                labelled(before)
                wait_for(lambda: services.named(before) is not None, "the first service", 15)

                relay.stop()  # from WakeDock's side, the engine is gone
                wait_for(lambda: lost in server.log(), "the outage to be noticed", 15)
                engine.containers.get(before).remove(force=True)
                labelled(during)
                # The API still answers from the database meanwhile.
                assert services.named(before) is not None
                assert services.named(during) is None

                relay.start()
                wait_for(
                    lambda: services.named(during) is not None and services.named(before) is None,
                    "the changes made during the outage",
                    30,
                )
                log = server.log()
            finally:
                services.close()
    finally:
        relay.stop()
    assert len(re.findall(lost, log)) == 1, log
    assert log.count("following the Docker engine's events again") == 1, log


def test_on_swarm_a_labelled_service_appears_changes_and_goes(
    make_harness: Callable[..., Harness], engine: docker.DockerClient
) -> None:
    """The Swarm runtime's events (a service's labels change in place), through the watcher
    in process, on the engine's single-node Swarm (tests/support/swarm.py)."""
    ensure_swarm_manager(engine)
    installation = f"wd-disc-{secrets.token_hex(4)}"
    runtime = DockerSwarmRuntime(base_url=SOCKET, installation=installation)
    h = make_harness(runtime=runtime, docker={"installation": installation, "runtime": "swarm"})
    watcher = DiscoveryWatcher(h.components.reconciler, runtime, debounce=0.2)
    name = f"wd-disc-svc-{secrets.token_hex(3)}"
    labels = {"wakedock.enable": "true", "wakedock.readiness": "tcp:8080"}
    watcher.start()
    service = None
    try:
        # Followed from before the service exists: its discovery comes from the events.
        wait_for(lambda: watcher._stream is not None, "the Swarm's event stream", 15)
        service = engine.services.create(
            TEST_IMAGE,
            ["sleep", "300"],
            name=name,
            labels=labels,
            mode=ServiceMode("replicated", replicas=0),
        )

        def idle_timeout() -> int | None:
            found = [v for v in h.components.services.list() if v.name == name]
            return found[0].spec.idle_timeout_s if found else None

        wait_for(lambda: idle_timeout() is not None, "the Swarm service to appear", 15)
        service.update(labels={**labels, "wakedock.idle_timeout": "20m"})
        wait_for(lambda: idle_timeout() == 1200, "the new labels to apply", 15)
        service.remove()
        service = None
        wait_for(lambda: idle_timeout() is None, "the service to go", 15)
    finally:
        watcher.stop()
        if service is not None:
            service.remove()


def test_with_two_workers_each_change_is_applied_and_audited_once(
    data: Path,
    env: dict[str, str],
    viewer: tuple[str, str],
    labelled: Labelled,
    redis_server: RedisServer,
) -> None:
    """Only the leader follows the engine; the database guards the rest (docs/services.md)."""
    workers = {
        **env,
        "WAKEDOCK_SERVER__WORKERS": "2",
        "WAKEDOCK_RATE_LIMIT__STORAGE_URL": redis_server.url,
    }
    name = f"wd-disc-pair-{secrets.token_hex(3)}"
    with wakedock_server(data, env=workers, ready_timeout=WORKERS_START) as server:
        wait_workers(server, 2)
        services = Services(server, viewer)
        try:
            container = labelled(name)
            wait_for(lambda: services.named(name) is not None, "the service to appear", 30)
            container.remove(force=True)
            wait_for(lambda: services.named(name) is None, "the service to go", 30)
        finally:
            services.close()
    assert audited(data, name) == [
        ("service_discovered", "system:discovery"),
        ("service_delete", "system:discovery"),
    ]
