"""Claims (cluster/claims.py): a key goes to its first claimer only, on SQLite and PostgreSQL,
until it expires; from threads racing for it, exactly one wins."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from wakedock.clock import FakeClock
from wakedock.cluster.claims import claim_first
from wakedock.cluster.models import Claim
from wakedock.db import make_engine, make_session_factory, migrate, transaction


@pytest.fixture
def factory(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(database_url)
    migrate(engine)
    yield make_session_factory(engine)
    engine.dispose()


def claim(factory: sessionmaker[Session], clock: FakeClock, key: str, seconds: float) -> bool:
    now = clock.now()
    with transaction(factory) as db:
        return claim_first(db, key, now + timedelta(seconds=seconds), now=now)


def test_a_key_goes_to_its_first_claimer_until_it_expires(
    factory: sessionmaker[Session],
) -> None:
    clock = FakeClock()
    assert claim(factory, clock, "ticket:a", 60)
    assert not claim(factory, clock, "ticket:a", 60)
    assert claim(factory, clock, "ticket:b", 60)
    clock.advance(61)
    # Expired: pruned by the next claim, so the table keeps only what is still claimed.
    assert claim(factory, clock, "ticket:c", 60)
    with factory() as db:
        assert db.scalar(select(func.count()).select_from(Claim)) == 1
    assert claim(factory, clock, "ticket:a", 60)


def test_a_rolled_back_claim_is_given_up(factory: sessionmaker[Session]) -> None:
    clock = FakeClock()

    def guarded() -> None:
        with transaction(factory) as db:
            assert claim_first(db, "k", clock.now() + timedelta(seconds=60), now=clock.now())
            raise RuntimeError("the work the claim guarded failed")

    with pytest.raises(RuntimeError):
        guarded()
    assert claim(factory, clock, "k", 60)


def test_a_long_key_is_claimed_by_its_digest(factory: sessionmaker[Session]) -> None:
    clock = FakeClock()
    long = "audit:" + "x" * 300
    assert claim(factory, clock, long, 60)
    assert not claim(factory, clock, long, 60)
    assert claim(factory, clock, long + "y", 60)


def test_racing_threads_one_winner(factory: sessionmaker[Session]) -> None:
    clock = FakeClock()
    start = threading.Barrier(8)
    won: list[bool] = []

    def race() -> None:
        start.wait()
        won.append(claim(factory, clock, "ticket:race", 60))

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won) == [False] * 7 + [True]
