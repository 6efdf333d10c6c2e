"""The service host map (proxy/directory.py): loaded before the first request, patched at once by
a change made through this process, polled for changes made by another one (the CLI, another
worker), and never rebuilt by a lookup: a slow or failing reload leaves the previous map serving.

"Another process" is a second set of components on the same database (as a second worker or the
CLI would be): its changes reach the app only through the database. Each test runs on SQLite and
on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from conftest import Harness
from support.fake_runtime import FakeRuntime
from support.proxy import add_service, runtime, upstream_port  # noqa: F401 - fixtures (SQL: both backends)
from wakedock.app import create_asgi
from wakedock.db import transaction
from wakedock.proxy.directory import ServiceDirectory
from wakedock.rbac.permissions import Role

FAST = 0.05  # seconds between two polls of the database, in these tests


def directory(h: Harness, *, interval: float) -> ServiceDirectory:
    """A directory polling every `interval` seconds, put in place of the wired one."""
    c = h.components
    fresh = ServiceDirectory(
        c.db, c.services, c.settings.proxy.base_domain, c.clock, interval=interval
    )
    c.directory = fresh
    return fresh


@pytest.fixture
def make(make_harness: Callable[..., Harness], runtime: FakeRuntime) -> Callable[[], Harness]:
    """A harness on the test's database; called twice, the second is another process."""
    return lambda: make_harness(runtime=runtime, proxy={"admin_hosts": ["localhost"]})


@pytest.fixture
def h(make: Callable[[], Harness]) -> Harness:
    return make()


@pytest.fixture
def other(make: Callable[[], Harness]) -> Harness:
    return make()


def serving(h: Harness) -> TestClient:
    return TestClient(create_asgi(h.components), base_url="https://app.localhost")


def routed(client: TestClient, name: str) -> int:
    return client.get(f"https://{name}.localhost/").status_code


def failed(record: logging.LogRecord) -> bool:
    return record.getMessage().startswith("could not refresh the service host map")


def eventually(check: Callable[[], bool]) -> bool:
    """Whether `check` holds within a generous bound (the poller runs every FAST seconds)."""
    deadline = time.monotonic() + 15
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(FAST)
    return True


def test_the_first_request_finds_the_map_loaded(h: Harness, other: Harness) -> None:
    add_service(other, "early")  # before the server starts, and not through it
    directory(h, interval=3600)  # no poll before the first request: only the start-up load
    with serving(h) as client:
        assert client.get("https://early.localhost/").text == "hello from upstream\n"


def test_a_service_created_through_the_api_is_routable_at_once(h: Harness) -> None:
    directory(h, interval=3600)
    token = h.token_for(Role.ADMIN)
    with serving(h) as client:
        assert routed(client, "fresh") == 404
        body = {
            "name": "fresh",
            "image": "wakedock-test/busybox:1",
            "ports": [{"container_port": 8080}],
            "readiness": {"type": "http", "path": "/", "port": 8080},
            "access": {"policy": "public"},
        }
        created = h.client.post("/api/v1/services", json=body, headers=h.bearer(token))
        assert created.status_code == 201, created.text
        assert client.get("https://fresh.localhost/").text == "hello from upstream\n"
        url = f"/api/v1/services/{created.json()['id']}"
        removed = h.client.delete(url, headers=h.bearer(token))
        assert removed.status_code == 204, removed.text
        assert routed(client, "fresh") == 404


def test_a_service_defined_by_another_process_is_routable_after_the_next_poll(
    h: Harness, other: Harness
) -> None:
    directory(h, interval=FAST)
    with serving(h) as client:
        assert routed(client, "elsewhere") == 404
        add_service(other, "elsewhere")
        assert eventually(lambda: routed(client, "elsewhere") == 200)
        assert client.get("https://elsewhere.localhost/").text == "hello from upstream\n"


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[threading.Event, list[bool]]]:
    """Reloads wait for the returned event before reading; each one is counted."""
    release, reloads = threading.Event(), []
    original = ServiceDirectory._reload

    def slow(self: ServiceDirectory, full: bool) -> bool:
        reloads.append(full)
        release.wait(30)
        return original(self, full)

    monkeypatch.setattr(ServiceDirectory, "_reload", slow)
    yield release, reloads
    release.set()


def test_a_lookup_during_a_slow_reload_answers_from_the_previous_map_and_reloads_run_one_at_a_time(
    h: Harness, other: Harness, held: tuple[threading.Event, list[bool]]
) -> None:
    release, reloads = held
    add_service(h, "before")
    hosts = directory(h, interval=3600)

    async def scenario() -> None:
        release.set()
        await hosts.load()
        release.clear()
        add_service(other, "after")
        first = asyncio.create_task(hosts.refresh())
        second = asyncio.create_task(hosts.refresh())
        await asyncio.sleep(0.2)  # both started; the reload waits for `release`
        assert hosts.lookup("before.localhost") is not None
        assert hosts.lookup("after.localhost") is None
        release.set()
        assert await first and await second
        assert hosts.lookup("after.localhost") is not None
        assert len(reloads) == 2  # the start-up load, then one reload for both callers
        assert not await hosts.refresh()  # nothing changed since: the map is not rebuilt

    asyncio.run(scenario())


def test_a_failing_reload_keeps_the_map_says_so_once_and_is_retried(
    h: Harness, other: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    add_service(h, "kept")
    directory(h, interval=FAST)
    with serving(h) as client, caplog.at_level(logging.WARNING):
        assert routed(client, "kept") == 200  # awake now
        with transaction(h.components.db) as db:  # the services table goes away
            db.execute(text("ALTER TABLE services RENAME TO services_away"))
        assert eventually(lambda: any(failed(r) for r in caplog.records))
        time.sleep(10 * FAST)  # several more failed polls
        assert client.get("https://kept.localhost/").text == "hello from upstream\n"
        with transaction(h.components.db) as db:
            db.execute(text("ALTER TABLE services_away RENAME TO services"))
        add_service(other, "later")
        assert eventually(lambda: routed(client, "later") == 200)
        assert routed(client, "unknown") == 404
    failures = [r for r in caplog.records if failed(r)]
    assert len(failures) == 1, [r.getMessage() for r in failures]
    # The database's own words (SQLite, PostgreSQL), not SQLAlchemy's quoting of the statement.
    said = failures[0].getMessage()
    assert "no such table: services" in said or 'relation "services" does not exist' in said
    assert "[SQL:" not in said
