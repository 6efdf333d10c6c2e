"""Which edges with direct routes are attached now: each registers itself in the database.

A running `wakedock edge run` that renders direct routes holds a lease named `edge:<host:pid>`
(cluster/leases.py), renewed every HEARTBEAT_SECONDS until EDGE_TTL_SECONDS after its last
renewal, and released when it stops (after nginx exited). `wakedock serve` asks `attached()`
before a stop: with an edge attached a stop waits the edge's stop grace (its direct route is
dropped first), without one it stops at once. The database is the meeting point because both
sides already share it, whatever process or host they run on (several workers, an edge on a
host of its own later); the expiry compares the edge's clock with the server's, which must
therefore agree within a few seconds (as for every lease).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from wakedock.clock import Clock
from wakedock.cluster.leases import Leases
from wakedock.cluster.models import Lease
from wakedock.db import transaction

PREFIX = "edge:"
HEARTBEAT_SECONDS = 2.0
# A registration outlives its last renewal this long: an edge whose supervisor just died may
# still serve a route rendered before, and an edge renewing late (a busy machine) stays attached.
EDGE_TTL_SECONDS = 10.0


@dataclass(frozen=True)
class AttachedEdge:
    """An edge whose registration has not expired: who, and until when it counts as attached."""

    holder: str
    expires_at: datetime


class EdgeRegistry:
    """The edges' registrations (leases named `edge:<holder>`)."""

    def __init__(self, factory: sessionmaker[Session], clock: Clock) -> None:
        self._factory = factory
        self._clock = clock
        self._leases = Leases(factory, clock)

    def register(self, holder: str, ttl_seconds: float = EDGE_TTL_SECONDS) -> None:
        """Register (or renew) the edge `holder` until now + ttl. Raises when the database
        cannot be written: the caller must not count itself attached then."""
        if not self._leases.acquire(PREFIX + holder, holder, ttl_seconds):
            # Only a process with the same host:pid could hold it: a stale row of a dead one.
            raise RuntimeError(f"the edge registration {holder!r} is held by another process")

    def release(self, holder: str) -> None:
        """Unregister `holder` now (its nginx has stopped)."""
        self._leases.release(PREFIX + holder, holder)

    def prune(self) -> None:
        """Delete the expired registrations (edges that died; each process registers under a
        name of its own, so nothing else reuses them). An edge calls it when it starts."""
        with transaction(self._factory) as db:
            db.execute(
                delete(Lease).where(
                    Lease.name.startswith(PREFIX, autoescape=True),
                    Lease.expires_at <= self._clock.now(),
                )
            )

    def attached(self) -> list[AttachedEdge]:
        """The edges registered now, oldest expiry first (one indexed range read)."""
        now = self._clock.now()
        with self._factory() as db:
            rows = db.scalars(
                select(Lease)
                .where(Lease.name.startswith(PREFIX, autoescape=True), Lease.expires_at > now)
                .order_by(Lease.expires_at)
            ).all()
            return [AttachedEdge(row.holder, row.expires_at) for row in rows]

    def any_attached(self) -> bool:
        """Whether any edge is registered now (a stop asks this)."""
        return bool(self.attached())
