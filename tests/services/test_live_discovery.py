"""Live discovery on the in-memory runtime: the reconciler's targeted sync (labels changed, a
container renamed or removed), and the watcher's debounce, reconnection and leadership. The
real engine and a real `wakedock serve`: tests/integration/test_live_discovery_engine.py."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import select

from conftest import Harness
from support.fake_runtime import FakeRuntime
from wakedock.audit.models import AuditEvent
from wakedock.context import RequestContext
from wakedock.db import transaction
from wakedock.rbac.permissions import Role
from wakedock.runtime.base import State
from wakedock.services.watch import DiscoveryWatcher

CONTEXT = RequestContext(actor="system:discovery")
BLOG = {"wakedock.enable": "true", "wakedock.port": "80"}


@pytest.fixture
def runtime() -> FakeRuntime:
    return FakeRuntime()


@pytest.fixture
def h(make_harness: Callable[..., Harness], runtime: FakeRuntime) -> Harness:
    return make_harness(runtime=runtime)


@pytest.fixture
def watcher(h: Harness, runtime: FakeRuntime) -> Iterator[DiscoveryWatcher]:
    watching = DiscoveryWatcher(h.components.reconciler, runtime, debounce=0.05, max_backoff=0.4)
    watching.start()
    yield watching
    watching.stop()


def services(h: Harness) -> dict[str, tuple[int, str]]:
    """name -> (id, spec's port) of every service."""
    return {
        v.name: (v.id, str(v.spec.ports[0].container_port) if v.spec.ports else "")
        for v in h.components.services.list()
    }


def audited(h: Harness, name: str) -> list[tuple[str, str | None]]:
    with transaction(h.components.db) as db:
        rows = db.scalars(select(AuditEvent).where(AuditEvent.target == name)).all()
        return [(row.type, row.actor) for row in rows]


def eventually(condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_sync_follows_a_recreated_container_and_removes_the_service_with_it(
    h: Harness, runtime: FakeRuntime
) -> None:
    old = runtime.add_foreign("blog", dict(BLOG))
    assert h.components.reconciler.sync([old], CONTEXT).discovered == ["blog"]
    [(sid, port)] = services(h).values()
    assert port == "80"
    # `docker compose up` after a label change: the old container goes, a new one comes.
    del runtime.containers[old]
    new = runtime.add_foreign("blog", {**BLOG, "wakedock.port": "8080"})
    report = h.components.reconciler.sync([old, new], CONTEXT)
    assert (report.updated, report.removed) == (["blog"], [])
    assert services(h) == {"blog": (sid, "8080")}
    assert h.components.services.get("blog").container_ref == new
    del runtime.containers[new]
    assert h.components.reconciler.sync([new], CONTEXT).removed == ["blog"]
    assert services(h) == {}
    assert audited(h, "blog") == [
        ("service_discovered", "system:discovery"),
        ("service_update", "system:discovery"),
        ("service_delete", "system:discovery"),
    ]


def test_a_renamed_container_moves_its_service_and_invalid_labels_configure_nothing(
    h: Harness, runtime: FakeRuntime
) -> None:
    ref = runtime.add_foreign("blog", dict(BLOG))
    h.components.reconciler.sync([ref], CONTEXT)
    runtime.containers[ref].name = "journal"
    report = h.components.reconciler.sync([ref], CONTEXT)
    assert (report.discovered, report.removed) == (["journal"], ["blog"])
    broken = runtime.add_foreign("broken", {"wakedock.enable": "true", "wakedock.port": "x"})
    report = h.components.reconciler.sync([broken], CONTEXT)
    assert report.problems == ["broken: wakedock.port: expected a port number"]
    assert list(services(h)) == ["journal"]


def test_a_full_reconcile_removes_a_gone_container_s_service_unless_others_depend_on_it(
    h: Harness, runtime: FakeRuntime
) -> None:
    blog = runtime.add_foreign("blog", dict(BLOG))
    shop = runtime.add_foreign("shop", dict(BLOG))
    h.components.reconciler.run(CONTEXT)
    body = {
        "name": "api",
        "image": "wakedock-test/busybox:1",
        "readiness": {"type": "tcp", "port": 80},
        "depends_on": ["shop"],
    }
    token = h.token_for(Role.OPERATOR)
    created = h.client.post("/api/v1/services", json=body, headers=h.bearer(token))
    assert created.status_code == 201, created.text
    runtime.containers = {r: c for r, c in runtime.containers.items() if r not in (blog, shop)}
    report = h.components.reconciler.run(CONTEXT)
    assert report.removed == ["blog"]
    assert report.missing == ["shop"]
    assert report.problems == ["shop: gone, but api depend on it"]
    assert h.components.services.get("shop").state == State.MISSING.value


def test_the_watcher_applies_events_and_catches_up_after_the_engine_comes_back(
    h: Harness,
    runtime: FakeRuntime,
    watcher: DiscoveryWatcher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "wakedock.services")
    eventually(lambda: len(runtime.streams) == 1, "the event stream")
    ref = runtime.add_foreign("blog", dict(BLOG))
    runtime.emit(ref, "create")
    eventually(lambda: "blog" in services(h), "the discovered service")

    # The engine goes away; while it is away (several reconnections fail) the container goes
    # and another comes.
    runtime.down = True
    runtime.cut()
    del runtime.containers[ref]
    runtime.add_foreign("shop", dict(BLOG))
    time.sleep(1.5)  # not an assertion: lets the watcher fail a few reconnections
    runtime.down = False
    eventually(lambda: list(services(h)) == ["shop"], "the catch-up after the outage")
    lost = [r for r in caplog.records if "event stream was lost" in r.getMessage()]
    failed = [r for r in caplog.records if "cannot follow" in r.getMessage()]
    back = [r for r in caplog.records if "following the Docker engine's events again" in r.message]
    assert (len(lost), len(failed), len(back)) == (1, 0, 1), caplog.text


def test_a_burst_is_applied_once_and_a_follower_that_does_not_lead_waits(
    h: Harness, runtime: FakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[set[str] | str] = []
    reconciler = h.components.reconciler
    sync, run = reconciler.sync, reconciler.run

    def synced(refs: set[str], context: RequestContext) -> object:
        calls.append(set(refs))
        return sync(refs, context)

    def ran(context: RequestContext) -> object:
        calls.append("full")
        return run(context)

    monkeypatch.setattr(reconciler, "sync", synced)
    monkeypatch.setattr(reconciler, "run", ran)
    leading = False
    watching = DiscoveryWatcher(h.components.reconciler, runtime, debounce=0.3)
    watching.lead_only_while(lambda: leading)
    watching.start()
    try:
        time.sleep(1.2)  # not an assertion: a non-leader had the time to follow, and did not
        assert runtime.streams == []
        leading = True
        eventually(lambda: calls == ["full"], "the leader's catch-up pass")
        refs = [runtime.add_foreign(f"app{n}", dict(BLOG)) for n in range(5)]
        for ref in refs:
            runtime.emit(ref, "create")
        eventually(lambda: len(services(h)) == 5, "the burst's services")
        assert calls == ["full", set(refs)]
    finally:
        watching.stop()
    assert not any(t.is_alive() for t in watching._threads)


def test_a_failing_pass_is_retried_in_full_and_logged_once(
    h: Harness,
    runtime: FakeRuntime,
    watcher: DiscoveryWatcher,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "wakedock.services")
    eventually(lambda: len(runtime.streams) == 1, "the event stream")
    reconciler = h.components.reconciler
    run = reconciler.run
    failures: list[str] = []

    def away(*args: object) -> object:
        failures.append("away")
        raise ConnectionError("the database is away")

    monkeypatch.setattr(reconciler, "sync", away)
    monkeypatch.setattr(reconciler, "run", away)
    ref = runtime.add_foreign("blog", dict(BLOG))
    runtime.emit(ref, "create")
    eventually(lambda: len(failures) >= 3, "a few retries")
    monkeypatch.setattr(reconciler, "run", run)
    eventually(lambda: "blog" in services(h), "the retried full pass")
    eventually(lambda: "applied again" in caplog.text, "the recovery to be logged")
    messages = [r.getMessage() for r in caplog.records]
    assert sum("could not apply" in m for m in messages) == 1, messages
    assert sum("applied again" in m for m in messages) == 1, messages
