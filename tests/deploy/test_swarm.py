"""Swarm, for real, end to end (issue #17, docs/swarm.md): the production stack
(deploy/compose.yaml + deploy/compose.swarm.yaml, rendered by scripts/swarm-stack.py: edge,
WakeDock, socket proxy, PostgreSQL, Redis) deployed with `docker stack deploy` on the
single-node test Swarm. WakeDock runs as a Swarm service and reaches the engine only through
`wakedock socket-proxy --swarm` (the only task mounting the socket); the app service was deployed
by its owner, in a stack of its own, at 0 replicas with WakeDock's discovery labels on WakeDock's
services network. What a visitor and the engine see: a visit through the edge (nginx +
ModSecurity + CRS, by a front door on 127.0.0.1) wakes the app to 1 replica and gets the app's
own answer, idleness puts it back to 0, and 200 concurrent first requests scale it up once (the
engine's own service events, read on the host, not through the proxy)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
import yaml

from support.docker_images import docker_client
from support.stack_images import build_stack_images
from support.swarm import ensure_swarm_manager
from support.swarm_stack import (
    DOCKER,
    ROOT,
    SwarmStack,
    deployed_stack,
    replicas,
    running_tasks,
    task_containers,
    wait_for,
)
from support.wakedock_image import base_of

pytestmark = pytest.mark.integration

IDLE_TIMEOUT_S = 5
APP = {"Host": "app.localhost"}  # the app's `wakedock.name`, under proxy.base_domain
ANSWER = "hello from swarm-app\n"  # the app's own answer (tests/support/apps/testapp.py)
BURST = 200
PRODUCTION = ("edge", "wakedock", "socket-proxy", "postgres", "redis")


@pytest.fixture(scope="module")
def engine() -> docker.DockerClient:
    client = docker_client()
    ensure_swarm_manager(client)
    return client


@pytest.fixture(scope="module")
def stack(
    engine: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SwarmStack]:
    images = build_stack_images(engine)
    with deployed_stack(
        engine,
        images=images,
        app_image=base_of(engine),
        directory=tmp_path_factory.mktemp("wd-swarm-stack"),
        idle_timeout=IDLE_TIMEOUT_S,
    ) as deployed:
        yield deployed


def _asleep(engine: docker.DockerClient, app: str) -> bool:
    return replicas(engine, app) == 0 and running_tasks(engine, app) == 0


def _scale_events(engine: docker.DockerClient, app: str, since_ns: int) -> list[dict[str, Any]]:
    """The engine's `update` events of the app service from `since_ns` until now."""
    events = engine.events(
        since=since_ns // 1_000_000_000,
        until=int(time.time()) + 1,
        filters={"type": "service", "event": "update", "service": app},
        decode=True,
    )
    return [e for e in events if int(e["timeNano"]) >= since_ns]


def test_a_visit_wakes_the_swarm_service_and_idleness_scales_it_back_to_0(
    engine: docker.DockerClient, stack: SwarmStack
) -> None:
    app = stack.service("app")
    assert _asleep(engine, app)
    # The production stack, every service running one task; the edge publishes nothing (the
    # front door on 127.0.0.1 reaches it on the `front` network).
    for short in PRODUCTION:
        assert running_tasks(engine, stack.service(short)) == 1, short
    assert not engine.api.inspect_service(stack.service("edge"))["Endpoint"].get("Ports")
    # WakeDock's own task and the proxy's: the socket is mounted in the proxy only.
    [wakedock] = task_containers(engine, stack.service("wakedock"))
    [proxy] = task_containers(engine, stack.service("socket-proxy"))
    assert not [m for m in wakedock.attrs["Mounts"] if "docker.sock" in m.get("Source", "")]
    binds = [m["Source"] for m in proxy.attrs["Mounts"] if m["Type"] == "bind"]
    assert binds == ["/var/run/docker.sock"]

    since = time.time_ns()
    with stack.client(timeout=120) as http:
        started = time.monotonic()
        # Not a browser: held until the app is ready, then the app's own answer.
        answer = http.get("/", headers=APP)
        woke_in = time.monotonic() - started
        assert answer.status_code == 200, answer.text
        assert answer.text == ANSWER
        assert replicas(engine, app) == 1 and running_tasks(engine, app) == 1
        # Awake: the next visit is proxied at once.
        assert http.get("/", headers=APP).text == ANSWER
    [woken] = _scale_events(engine, app, since)
    assert woken["Actor"]["Attributes"]["replicas.new"] == "1"

    slept_in = wait_for("the app scaled back to 0", lambda: _asleep(engine, app), 60)
    print(f"\nswarm: woken and answered in {woke_in:.2f} s; back to 0 {slept_in:.1f} s later")


def test_200_concurrent_first_requests_scale_the_service_up_once(
    engine: docker.DockerClient, stack: SwarmStack
) -> None:
    app = stack.service("app")
    wait_for("the app asleep", lambda: _asleep(engine, app), 60)
    since = time.time_ns()

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=BURST, max_keepalive_connections=0)
        async with stack.async_client(timeout=120, limits=limits) as http:
            return await asyncio.gather(*(http.get("/", headers=APP) for _ in range(BURST)))

    started = time.monotonic()
    answers = asyncio.run(burst())
    took = time.monotonic() - started
    statuses: dict[int, int] = {}
    for answer in answers:
        statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
    if statuses != {200: BURST}:
        [wakedock] = task_containers(engine, stack.service("wakedock"))
        said = wakedock.logs().decode(errors="replace").splitlines()
        why = [line for line in said if "service app:" in line][-5:]
        pytest.fail(f"{statuses} in {took:.2f} s; WakeDock's log: {why}")
    assert {answer.text for answer in answers} == {ANSWER}
    # Counted before the idle timeout can scale it down again: one scale-up, one task.
    events = _scale_events(engine, app, since)
    assert [e["Actor"]["Attributes"]["replicas.new"] for e in events] == ["1"]
    assert replicas(engine, app) == 1 and running_tasks(engine, app) == 1
    print(f"\nswarm: {BURST} concurrent first requests answered in {took:.2f} s, 1 scale-up")


# The production stack for `docker stack deploy` (scripts/swarm-stack.py): a compose file as
# deploy/compose.yaml writes it, rendered, must be read by the Docker CLI with nothing dropped.
COMPOSE = """
x-hardening: &hardening
  read_only: true
  cap_drop: [ALL]
  security_opt: ["no-new-privileges:true"]
  restart: "on-failure:5"
services:
  wakedock:
    <<: *hardening
    image: ${WAKEDOCK_IMAGE:?WakeDock's image (scripts/build-image.sh)}
    user: "10001:10001"
    secrets: [database_url]
    volumes: [wakedock-data:/var/lib/wakedock]
    tmpfs: ["/tmp:rw,noexec,nosuid,nodev,uid=10001,gid=10001,mode=0700,size=64m"]
    mem_limit: 1g
    cpus: 1.0
    pids_limit: 256
    networks: [engine]
    depends_on: [socket-proxy]
  socket-proxy:
    <<: *hardening
    image: ${WAKEDOCK_IMAGE:?image}
    command: ["socket-proxy", "--listen", "0.0.0.0:2375", "--installation", "wakedock"]
    user: "10001:10001"
    group_add: ["${DOCKER_GID:?the socket's group (stat -c %g /var/run/docker.sock)}"]
    volumes: ["/var/run/docker.sock:/var/run/docker.sock:ro"]
    networks: [engine]
    mem_limit: 128m
    pids_limit: 64
  edge:
    <<: *hardening
    image: ${WAKEDOCK_IMAGE:?image}
    ports: ["${WAKEDOCK_PUBLISH_ADDRESS:-127.0.0.1}:${WAKEDOCK_PUBLISH_PORT:-443}:8443"]
    volumes: ["./postgres/pg_hba.conf:/etc/wakedock/pg_hba.conf:ro"]
    shm_size: 128m
    networks: [engine]
networks:
  engine: {internal: true}
volumes:
  wakedock-data: {}
secrets:
  database_url: {file: "${WAKEDOCK_SECRETS_DIR:-./secrets}/database_url"}
"""


def _render(compose: Path, *more: str) -> tuple[dict[str, Any], str]:
    rendered = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "swarm-stack.py"), "--compose", str(compose),
         *more],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    return yaml.safe_load(rendered.stdout), rendered.stderr


def _stack_config(stack: dict[str, Any], directory: Path) -> dict[str, Any]:
    """What `docker stack deploy` would read: the CLI's own `docker stack config`."""
    path = directory / "stack.yaml"
    path.write_text(yaml.safe_dump(stack))
    variables = {"WAKEDOCK_IMAGE": "wd-swarm-image", "DOCKER_GID": "4242"}
    for name in ("EDGE_IMAGE", "POSTGRES_IMAGE", "REDIS_IMAGE"):
        variables[name] = "wd-swarm-image"
    read = subprocess.run(
        [DOCKER, "stack", "config", "-c", str(path)],
        env={**os.environ, **variables}, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert read.returncode == 0, read.stderr
    return dict(yaml.safe_load(read.stdout))


def test_a_compose_stack_renders_for_docker_stack_deploy(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(COMPOSE)
    stack, warnings = _render(tmp_path / "compose.yaml", "--no-override")
    config = _stack_config(stack, tmp_path)
    wakedock, proxy, edge = (config["services"][n] for n in ("wakedock", "socket-proxy", "edge"))
    # Limits and restarts where Swarm reads them; the tmpfs as a Swarm tmpfs mount.
    assert wakedock["deploy"]["resources"]["limits"] == {
        "cpus": "1.0", "memory": "1073741824", "pids": 256
    }  # fmt: skip
    assert wakedock["deploy"]["restart_policy"] == {"condition": "on-failure", "max_attempts": 5}
    assert {"type": "tmpfs", "target": "/tmp", "tmpfs": {"size": 64 * 1024**2}} in wakedock[
        "volumes"
    ]
    assert wakedock["secrets"] == [
        {"source": "database_url", "uid": "10001", "gid": "10001", "mode": 0o400}
    ]
    assert wakedock["deploy"]["endpoint_mode"] == "dnsrr"
    # The socket's group as the proxy's group (Swarm has no group_add); every image read whole.
    assert proxy["user"] == "10001:4242"
    assert {spec["image"] for spec in config["services"].values()} == {"wd-swarm-image"}
    # A relative read-only file bind becomes a config, the shm size a tmpfs; the port is
    # published in host mode, and the loss of its address is said.
    assert edge["configs"] == [
        {"source": "edge_pg_hba_conf", "target": "/etc/wakedock/pg_hba.conf"}
    ]
    assert config["configs"]["edge_pg_hba_conf"]["file"] == str(tmp_path / "postgres/pg_hba.conf")
    assert {"type": "tmpfs", "target": "/dev/shm", "tmpfs": {"size": 128 * 1024**2}} in edge[
        "volumes"
    ]
    assert edge["ports"] == [{"mode": "host", "target": 8443, "published": 443, "protocol": "tcp"}]
    assert "Swarm cannot bind an address" in warnings
    assert config["secrets"]["database_url"]["file"] == str(tmp_path / "secrets/database_url")
    for name, spec in config["services"].items():
        for dropped in ("security_opt", "depends_on", "pids_limit", "mem_limit", "tmpfs"):
            assert dropped not in spec, (name, dropped)
    assert config["networks"]["engine"] == {"driver": "overlay", "internal": True}


def test_the_production_stack_renders_for_docker_stack_deploy(tmp_path: Path) -> None:
    """deploy/compose.yaml with deploy/compose.swarm.yaml: WakeDock on the Swarm runtime, the
    proxy with --swarm and the only one with the socket, every service limited."""
    compose = ROOT / "deploy" / "compose.yaml"
    if not compose.exists():
        pytest.skip("deploy/compose.yaml is not on this branch yet")
    stack, _ = _render(compose)
    config = _stack_config(stack, tmp_path)
    services = config["services"]
    assert {spec["image"] for spec in services.values()} == {"wd-swarm-image"}
    assert services["wakedock"]["environment"]["WAKEDOCK_DOCKER__RUNTIME"] == "swarm"
    # The Engine runtime's docker.network: WakeDock refuses it with runtime: swarm.
    assert "WAKEDOCK_DOCKER__NETWORK" not in services["wakedock"]["environment"]
    assert "services" in services["wakedock"]["networks"]
    assert services["socket-proxy"]["command"][-1] == "--swarm"
    for name, spec in services.items():
        sockets = [v for v in spec.get("volumes", []) if "docker.sock" in str(v)]
        assert bool(sockets) == (name == "socket-proxy"), name
        assert spec["read_only"] is True and spec["cap_drop"] == ["ALL"], name
        limits = spec["deploy"]["resources"]["limits"]
        assert {"cpus", "memory", "pids"} <= set(limits), name
