"""What the service page's charts read from the proxy: each wake this process started, kept in
the database (the last 50 per service, gone with the service), and the requests proxied per
minute (the last hour, in memory)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from conftest import Harness
from support.fake_runtime import FakeRuntime
from support.proxy import add_service, database_url, runtime, upstream_port  # noqa: F401 - fixtures
from wakedock.clock import FakeClock
from wakedock.context import RequestContext
from wakedock.proxy.activity import ActivityTracker
from wakedock.rbac.permissions import Role
from wakedock.services.snapshots import Actor
from wakedock.services.wake_history import WakeHistory

CONTEXT = RequestContext(actor="visitor")
ADMIN = Actor("test", Role.ADMIN)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def h(make_harness: Callable[..., Harness], runtime: FakeRuntime, clock: FakeClock) -> Harness:
    return make_harness(runtime=runtime, clock=clock)


def test_a_wake_this_process_started_is_recorded_and_a_probe_only_is_not(h: Harness) -> None:
    add_service(h, "app")
    wakes, services = h.components.wakes, h.components.services
    history = WakeHistory(h.components.db)
    view = services.get("app")

    async def scenario() -> None:
        await wakes.ensure_awake(view, CONTEXT)
        [first] = history.recent(view.id)
        assert first.seconds == wakes.snapshot("app").time_to_ready
        # Started around this process (the CLI, another worker): the next wake only probes.
        wakes.forget("app")
        services.stop(ADMIN, "app", CONTEXT)
        services.start(ADMIN, "app", CONTEXT)
        await wakes.ensure_awake(services.get("app"), CONTEXT)
        assert history.recent(view.id) == [first]

    asyncio.run(scenario())
    services.delete(ADMIN, "app", CONTEXT)
    assert history.recent(view.id) == []


def test_requests_are_counted_per_minute_for_the_last_hour(clock: FakeClock) -> None:
    activity = ActivityTracker(clock)
    clock.advance(60 - clock.now().timestamp() % 60)  # the start of a minute
    for _ in range(3):
        with activity.connection("app"):
            pass
    clock.advance(61)
    with activity.connection("app"):
        pass
    assert activity.requests_per_minute("app")[-2:] == [3, 1]
    assert activity.requests_per_minute("blog") == [0] * 60
    clock.advance(59 * 60)
    assert activity.requests_per_minute("app") == [1] + [0] * 59
    clock.advance(60)
    assert activity.requests_per_minute("app") == [0] * 60
