"""Leases and the workers' shared activity, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from wakedock.clock import FakeClock
from wakedock.cluster.activity import STALE_SECONDS, SharedActivity, Traffic
from wakedock.cluster.leadership import Leadership
from wakedock.cluster.leases import Leases
from wakedock.db import make_engine, make_session_factory, migrate


@pytest.fixture
def factory(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(database_url)
    migrate(engine)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_one_holder_until_the_lease_expires_then_another_takes_over(
    factory: sessionmaker[Session], clock: FakeClock
) -> None:
    leases = Leases(factory, clock)
    assert leases.acquire("leader", "a", 15)
    assert not leases.acquire("leader", "b", 15)
    assert leases.holder("leader") == "a"
    clock.advance(10)
    assert leases.acquire("leader", "a", 15)  # renewed: runs 15 s from now
    clock.advance(10)
    assert not leases.acquire("leader", "b", 15)
    clock.advance(6)  # a stopped renewing: expired
    assert leases.holder("leader") is None
    assert leases.acquire("leader", "b", 15)
    assert not leases.acquire("leader", "a", 15)
    assert leases.holder("leader") == "b"


def test_release_frees_the_lease_only_for_its_holder(
    factory: sessionmaker[Session], clock: FakeClock
) -> None:
    leases = Leases(factory, clock)
    assert leases.acquire("wake:app", "a", 60)
    leases.release("wake:app", "b")
    assert leases.holder("wake:app") == "a"
    leases.release("wake:app", "a")
    assert leases.acquire("wake:app", "b", 60)


def test_concurrent_takers_get_one_holder(factory: sessionmaker[Session], clock: FakeClock) -> None:
    leases = Leases(factory, clock)
    won: list[str] = []
    start = threading.Barrier(8)

    def take(holder: str) -> None:
        start.wait()
        if leases.acquire("wake:burst", holder, 60):
            won.append(holder)

    threads = [threading.Thread(target=take, args=(f"w{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    assert leases.holder("wake:burst") == won[0]


def test_a_leader_leads_until_its_lease_could_have_expired(
    factory: sessionmaker[Session], clock: FakeClock
) -> None:
    first = Leadership(Leases(factory, clock), "a", clock, ttl=15)
    second = Leadership(Leases(factory, clock), "b", clock, ttl=15)
    assert asyncio.run(first.attempt())
    assert first.leading
    assert not asyncio.run(second.attempt())
    clock.advance(14)  # first did not renew: it stops leading before the lease ends
    assert not first.leading
    clock.advance(2)
    assert asyncio.run(second.attempt())
    assert not asyncio.run(first.attempt())
    asyncio.run(second.resign())
    assert asyncio.run(first.attempt())


def test_activity_merges_workers_and_forgets_a_dead_workers_connections(
    factory: sessionmaker[Session], clock: FakeClock
) -> None:
    shared = SharedActivity(factory, clock)
    early: datetime = clock.now()
    shared.write("w1", {"app": Traffic(early, 2), "blog": Traffic(early, 0)})
    clock.advance(3)
    later = clock.now()
    shared.write("w2", {"app": Traffic(later, 0)})
    merged = shared.merged()
    assert merged["app"] == Traffic(later, 2)
    assert merged["blog"] == Traffic(early, 0)
    clock.advance(STALE_SECONDS)  # w1 stopped writing: its open connections no longer count
    shared.write("w2", {"app": Traffic(later + timedelta(seconds=1), 0)})
    assert shared.merged()["app"] == Traffic(later + timedelta(seconds=1), 0)
    shared.forget("app")
    assert set(shared.merged()) == {"blog"}
