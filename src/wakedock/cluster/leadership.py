"""One leader among the worker processes for what must run once (the idle reaper, SIEM
delivery, the certificate's renewal and expiry warnings), behind the `leader` lease.

Every worker runs `Leadership.run`: the leader renews the lease every third of its time to
live, the others try to take it as often, so a leader that died is replaced within one time to
live. A leader counts itself leader only until its last renewal expires: if the database is
away longer than that, it stops leading before anyone else can start.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.concurrency import run_in_threadpool

from wakedock.clock import Clock
from wakedock.cluster.leases import Leases

log = logging.getLogger("wakedock.cluster")
LEADER = "leader"
LEADER_TTL_SECONDS = 15.0


class Leadership:
    def __init__(
        self, leases: Leases, holder: str, clock: Clock, *, ttl: float = LEADER_TTL_SECONDS
    ) -> None:
        self._leases = leases
        self.holder = holder
        self._clock = clock
        self._ttl = ttl
        # Monotonic time until which this process holds the lease for sure (a margin short).
        self._until = float("-inf")

    @property
    def leading(self) -> bool:
        return self._clock.monotonic() < self._until

    async def attempt(self) -> bool:
        """One renewal or takeover; True while this process leads."""
        was = self.leading
        started = self._clock.monotonic()
        try:
            held = await run_in_threadpool(self._leases.acquire, LEADER, self.holder, self._ttl)
        except Exception as exc:  # noqa: BLE001 - the database away: lead until the lease ends
            log.warning("could not renew the leader lease: %s", exc)
            held = False
            if self.leading:
                return True
        # The lease runs from before the statement: a margin of a tenth for clock rates.
        self._until = started + self._ttl * 0.9 if held else float("-inf")
        if held != was:
            log.info("worker %s %s the leader", self.holder, "is now" if held else "is no longer")
        return held

    async def run(self) -> None:
        while True:
            await self.attempt()
            await asyncio.sleep(self._ttl / 3)

    async def resign(self) -> None:
        """Hand the lease over at once (a graceful stop): the next worker need not wait."""
        if self.leading:
            self._until = float("-inf")
            try:
                await run_in_threadpool(self._leases.release, LEADER, self.holder)
            except Exception as exc:  # noqa: BLE001 - it expires on its own
                log.warning("could not release the leader lease: %s", exc)
