"""What several worker processes share (server.workers > 1): the traffic each one sees, merged
for the idle reaper's leader, and a claim per service so that only one worker starts it.

With one worker none of this runs: the proxy keeps everything in memory as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

from starlette.concurrency import run_in_threadpool

from wakedock.clock import Clock
from wakedock.cluster.activity import FLUSH_SECONDS, SharedActivity, Traffic
from wakedock.cluster.leases import Leases
from wakedock.proxy.activity import ActivityTracker
from wakedock.services.snapshots import ServiceView

log = logging.getLogger("wakedock.proxy")
# How often a worker waiting for another one's wake claim looks again.
CLAIM_POLL_SECONDS = 0.05


class SharedTraffic:
    """This worker's traffic written to the database about once a second, and (for the
    leader's reaper) every worker's read back and merged with its own."""

    def __init__(
        self, tracker: ActivityTracker, store: SharedActivity, worker: str, clock: Clock
    ) -> None:
        self._tracker = tracker
        self._store = store
        self.worker = worker
        self._clock = clock
        self._merged: dict[str, Traffic] = {}
        self._failing = False

    async def flush(self) -> None:
        """Write what this worker saw since the last flush (one transaction)."""
        seen = self._tracker.drain()
        traffic = {n: Traffic(a.last_seen, a.open_connections) for n, a in seen.items()}
        await run_in_threadpool(self._store.write, self.worker, traffic)

    async def run(self, after_flush: Callable[[], None]) -> None:
        """Flush every second; `after_flush` runs after each round (whatever its outcome)."""
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self.flush()
                self._failing = False
            except Exception as exc:  # noqa: BLE001 - the database away: retried next round
                if not self._failing:
                    log.warning("could not share this worker's activity: %s", exc)
                self._failing = True
            after_flush()

    async def refresh(self) -> None:
        """Read every worker's traffic (before a reaper pass)."""
        self._merged = await run_in_threadpool(self._store.merged)

    def candidates(self) -> list[str]:
        """The services any worker has served since they last went to sleep."""
        return sorted(self._merged)

    def idle_seconds(self, name: str) -> float | None:
        """Seconds since the last request on any worker; None while any worker has a
        connection open to it (or holds one as of its last heartbeat), or when never seen."""
        local = self._tracker.of(name)
        shared = self._merged.get(name, Traffic(None, 0))
        if local.open_connections or shared.open_connections:
            return None
        seen = [t for t in (local.last_seen, shared.last_seen) if t is not None]
        if not seen:
            return None
        return (self._clock.now() - max(seen)).total_seconds()

    async def forget(self, name: str) -> None:
        """`name` was stopped: no longer a candidate until a worker serves it again."""
        self._merged.pop(name, None)
        await run_in_threadpool(self._store.forget, name)


class WakeClaims:
    """One claim per service (the lease `wake:<name>`) held while a worker wakes or stops it:
    the others wait for it, then find the service running and only probe it."""

    def __init__(self, leases: Leases, holder: str) -> None:
        self._leases = leases
        self._holder = holder

    @asynccontextmanager
    async def held(
        self, name: str, ttl_seconds: float, *, wait_seconds: float | None = None
    ) -> AsyncIterator[None]:
        """Hold the claim on `name` for the block, waiting for another holder to release it
        (or for its claim to expire, if it died): at most `wait_seconds` (TimeoutError), else
        as long as the caller lets it."""
        lease = f"wake:{name}"
        async with asyncio.timeout(wait_seconds):
            while not await run_in_threadpool(
                self._leases.acquire, lease, self._holder, ttl_seconds
            ):
                await asyncio.sleep(CLAIM_POLL_SECONDS)
        try:
            yield
        finally:
            try:
                await run_in_threadpool(self._leases.release, lease, self._holder)
            except Exception as exc:  # noqa: BLE001 - the claim expires on its own
                log.warning("could not release the wake claim of %s: %s", name, exc)


def stopped_since(view: ServiceView | None, ready_at: datetime) -> bool:
    """The service was stopped (by another worker) after this worker saw it ready."""
    return view is not None and view.last_stopped_at is not None and view.last_stopped_at > ready_at
