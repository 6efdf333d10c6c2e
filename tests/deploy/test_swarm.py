"""Swarm, for real, end to end (issue #17, docs/swarm.md): deploy/swarm-test.yaml deployed with
`docker stack deploy` on the single-node test Swarm. WakeDock runs as a Swarm service on its
services' overlay network and reaches the engine only through `wakedock socket-proxy --swarm`
(the only task mounting the socket); the app service was deployed by its owner at 0 replicas
with WakeDock's discovery labels. What a visitor and the engine see: a visit through the front
door on 127.0.0.1 wakes the app to 1 replica and gets the app's own answer, idleness puts it back
to 0, and 200 concurrent first requests scale it up once (the engine's own service events,
read on the host, not through the proxy)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import docker
import httpx
import pytest

from support.docker_images import docker_client
from support.swarm import ensure_swarm_manager
from support.swarm_stack import (
    SwarmStack,
    deployed_stack,
    replicas,
    running_tasks,
    task_containers,
    wait_for,
)
from support.wakedock_image import base_of, build_image

pytestmark = pytest.mark.integration

IDLE_TIMEOUT_S = 5
APP = {"Host": "app.localhost"}  # the app's `wakedock.name`, under proxy.base_domain
ANSWER = "hello from swarm-app\n"  # the app's own answer (tests/support/apps/testapp.py)
BURST = 200


@pytest.fixture(scope="module")
def engine() -> docker.DockerClient:
    client = docker_client()
    ensure_swarm_manager(client)
    return client


@pytest.fixture(scope="module")
def stack(engine: docker.DockerClient) -> Iterator[SwarmStack]:
    image = build_image(engine)
    with deployed_stack(
        engine, wakedock_image=image, app_image=base_of(engine), idle_timeout=IDLE_TIMEOUT_S
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
    assert statuses == {200: BURST}, [a.text for a in answers if a.status_code != 200][:3]
    assert {answer.text for answer in answers} == {ANSWER}
    # Counted before the idle timeout can scale it down again: one scale-up, one task.
    events = _scale_events(engine, app, since)
    assert [e["Actor"]["Attributes"]["replicas.new"] for e in events] == ["1"]
    assert replicas(engine, app) == 1 and running_tasks(engine, app) == 1
    print(f"\nswarm: {BURST} concurrent first requests answered in {took:.2f} s, 1 scale-up")
