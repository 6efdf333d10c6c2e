"""The wake claim of several workers, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session, sessionmaker

from wakedock.clock import SystemClock
from wakedock.cluster.leases import Leases
from wakedock.db import make_engine, make_session_factory, migrate
from wakedock.proxy.shared import WakeClaims


@pytest.fixture
def factory(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(database_url)
    migrate(engine)
    yield make_session_factory(engine)
    engine.dispose()


def test_a_second_worker_waits_for_the_claim_then_holds_it(
    factory: sessionmaker[Session],
) -> None:
    leases = Leases(factory, SystemClock())
    first, second = WakeClaims(leases, "w1"), WakeClaims(leases, "w2")
    order: list[str] = []

    async def hold(claims: WakeClaims, who: str, delay: float) -> None:
        await asyncio.sleep(delay)
        async with claims.held("app", 30):
            order.append(f"{who} in")
            await asyncio.sleep(0.3)
            order.append(f"{who} out")

    async def both() -> None:
        await asyncio.gather(hold(first, "w1", 0), hold(second, "w2", 0))

    asyncio.run(both())
    # One after the other, never both inside (whichever got it first).
    one, other = order[0].split()[0], order[2].split()[0]
    assert one != other
    assert order == [f"{one} in", f"{one} out", f"{other} in", f"{other} out"]


def test_a_bounded_wait_for_the_claim_gives_up(factory: sessionmaker[Session]) -> None:
    leases = Leases(factory, SystemClock())
    assert leases.acquire("wake:app", "w1", 30)

    async def wait() -> None:
        async with WakeClaims(leases, "w2").held("app", 30, wait_seconds=0.3):
            pass

    with pytest.raises(TimeoutError):
        asyncio.run(wait())
    assert leases.holder("wake:app") == "w1"
