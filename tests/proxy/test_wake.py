"""The wake coordinator and idle reaper on an injected clock: dependency order, a request during
an idle stop, open connections, the CPU rule, the wake timeout."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from conftest import Harness
from support.fake_runtime import FakeRuntime
from support.proxy import add_service, database_url, runtime, upstream_port  # noqa: F401 - fixtures
from wakedock.app import create_asgi
from wakedock.audit.models import AuditEvent
from wakedock.auth.sessions import Principal
from wakedock.clock import FakeClock
from wakedock.context import RequestContext
from wakedock.db import transaction
from wakedock.proxy.decision import Ready, Refusal, Refused, Waking
from wakedock.proxy.reaper import IdleReaper
from wakedock.rbac.permissions import Role
from wakedock.services.snapshots import Actor, WakePhase

CONTEXT = RequestContext(actor="visitor")
ADMIN = Actor("test", Role.ADMIN)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def h(make_harness: Callable[..., Harness], runtime: FakeRuntime, clock: FakeClock) -> Harness:
    return make_harness(runtime=runtime, clock=clock, proxy={"admin_hosts": ["localhost"]})


def add(h: Harness, name: str, **extra: Any) -> None:
    add_service(h, name, **{"idle_timeout_s": 60, **extra})


def started(runtime: FakeRuntime) -> list[str]:
    names = {ref: c.labels["wakedock.service"] for ref, c in runtime.containers.items()}
    return [names[ref] for call, ref in runtime.calls if call == "start"]


def test_dependencies_wake_first_in_order(h: Harness, runtime: FakeRuntime) -> None:
    add(h, "db")
    add(h, "cache")
    add(h, "web", depends_on=["db", "cache"])
    web = h.components.services.get("web")
    asyncio.run(h.components.wakes.ensure_awake(web, CONTEXT))
    assert started(runtime) == ["db", "cache", "web"]


def test_a_request_during_an_idle_stop_waits_then_wakes_again(
    h: Harness, runtime: FakeRuntime, clock: FakeClock
) -> None:
    add(h, "app")
    view = h.components.services.get("app")
    wakes = h.components.wakes

    async def scenario() -> list[str]:
        await wakes.ensure_awake(view, CONTEXT)
        clock.advance(61)
        runtime.stop_delay = 0.3
        stopping = asyncio.create_task(wakes.stop_if_idle(view))
        await asyncio.sleep(0.05)  # the stop is under way
        assert wakes.endpoint_now("app") is None
        await wakes.ensure_awake(view, CONTEXT)
        assert await stopping is True
        return [call for call, _ in runtime.calls if call in ("start", "stop")]

    assert asyncio.run(scenario()) == ["start", "stop", "start"]
    assert runtime.containers[view.container_ref or ""].state.value == "running"


def test_open_connections_and_busy_cpu_keep_a_service_awake(
    h: Harness, runtime: FakeRuntime, clock: FakeClock
) -> None:
    add(h, "app")
    view = h.components.services.get("app")
    c = h.components
    reaper = IdleReaper(c.wakes, c.activity, c.services, interval=1, busy_cpu_percent=50)
    busy = IdleReaper(c.wakes, c.activity, c.services, interval=1, busy_cpu_percent=10)

    async def scenario() -> list[list[str]]:
        await c.wakes.ensure_awake(view, CONTEXT)
        rounds = []
        with c.activity.connection("app"):
            clock.advance(3600)
            rounds.append(await reaper.run_once())  # a WebSocket is open
        clock.advance(30)
        rounds.append(await reaper.run_once())  # closed 30 s ago, timeout 60 s
        clock.advance(31)
        rounds.append(await busy.run_once())  # idle, but 12.5 % CPU > 10 %
        rounds.append(await reaper.run_once())  # idle, 12.5 % < 50 %
        return rounds

    assert asyncio.run(scenario()) == [[], [], [], ["app"]]
    status = c.services.get("app")
    assert status.state == "stopped" and status.stop_reason == "idle"
    # A system operation: audited as the proxy, with the reason.
    with transaction(c.db) as db:
        stop = db.scalars(select(AuditEvent).where(AuditEvent.type == "service_stop")).one()
        assert (stop.actor, stop.target, json.loads(stop.details)) == (
            "system:proxy",
            "app",
            {"reason": "idle"},
        )
    assert c.wakes.snapshot("app").phase is WakePhase.ASLEEP


def test_clients_held_past_the_wake_timeout_get_503_retry_after(
    h: Harness, runtime: FakeRuntime
) -> None:
    add(h, "stuck", readiness={"type": "http", "port": 8080, "path": "/never"}, wake_timeout_s=1)
    with TestClient(create_asgi(h.components), base_url="https://stuck.localhost") as client:
        held = client.get("/")
    assert held.status_code == 503
    assert held.headers["retry-after"] == "5"
    assert h.components.services.get("stuck").stop_reason == "error"


def test_the_fake_clock_moves_monotonic_time_with_real_time_and_advance() -> None:
    clock = FakeClock()
    before = clock.monotonic()
    clock.advance(60)
    assert 60 <= clock.monotonic() - before < 70


def test_one_decision_per_visit_refused_waking_then_ready(h: Harness, clock: FakeClock) -> None:
    add(h, "team", access={"policy": "roles", "roles": ["operator"]})
    view = h.components.services.get("team")
    wakes = h.components.wakes

    def principal(role: str) -> Principal:
        return Principal(1, "ann", role, "s1", mfa_at=clock.now(), created_at=clock.now())

    async def scenario() -> None:
        assert await wakes.request(view, None, CONTEXT) == Refused(Refusal.SIGN_IN)
        refused = await wakes.request(view, principal("viewer"), CONTEXT)
        assert refused == Refused(Refusal.FORBIDDEN)
        first = await wakes.request(view, principal("operator"), CONTEXT)
        second = await wakes.request(view, principal("operator"), CONTEXT)
        assert isinstance(first, Waking) and isinstance(second, Waking)
        assert first.task is second.task  # single flight: the second visit joins the wake
        endpoint = await first.ready()
        assert await wakes.request(view, principal("operator"), CONTEXT) == Ready(endpoint)
        assert wakes.snapshot("team").phase is WakePhase.READY

    asyncio.run(scenario())


def test_a_running_service_reached_around_wakedock_is_adopted_then_reaped(
    h: Harness, runtime: FakeRuntime, clock: FakeClock
) -> None:
    """The edge's direct routes reach a service the API started: the activity socket hands it
    to `adopt`, which finds its endpoint without starting it again, and the reaper stops it
    once idle. A stopped service is never woken by adoption (a late log line after a stop)."""
    add(h, "app")
    add(h, "asleep")
    c = h.components
    c.services.start(ADMIN, "app", CONTEXT)  # not through the coordinator
    reaper = IdleReaper(c.wakes, c.activity, c.services, interval=1, busy_cpu_percent=None)

    async def scenario() -> list[list[str]]:
        assert c.wakes.awake_names() == []
        c.activity.touch("app")
        c.wakes.adopt(c.services.get("app"))
        c.wakes.adopt(c.services.get("app"))  # a second line while the probe runs: one task
        c.wakes.adopt(c.services.get("asleep"))
        for _ in range(100):
            if c.wakes.endpoint_now("app") is not None:
                break
            await asyncio.sleep(0.02)
        assert c.wakes.awake_names() == ["app"]
        rounds = [await reaper.run_once()]  # just seen
        clock.advance(61)
        rounds.append(await reaper.run_once())
        return rounds

    assert asyncio.run(scenario()) == [[], ["app"]]
    assert started(runtime) == ["app"]  # the API's start only: adoption started nothing
    assert c.services.get("app").stop_reason == "idle"
    assert c.services.get("asleep").state != "running"
