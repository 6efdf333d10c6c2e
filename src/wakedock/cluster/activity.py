"""The workers' traffic per service, merged in the database for the idle reaper's leader.

Each worker writes, about once a second, one row per service it touched or holds connections
to (batched in one transaction: an UPDATE, or an INSERT the first time). The leader reads them
all: the latest request of any worker, and the open connections of the workers whose heartbeat
is fresh (a worker that died stops counting after `STALE_SECONDS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from wakedock.clock import Clock
from wakedock.cluster.models import ServiceActivity
from wakedock.db import transaction

FLUSH_SECONDS = 1.0
STALE_SECONDS = 10.0


@dataclass(frozen=True)
class Traffic:
    """One worker's traffic to one service, or all workers' merged."""

    last_seen: datetime | None
    open_connections: int


class SharedActivity:
    def __init__(self, factory: sessionmaker[Session], clock: Clock) -> None:
        self._factory = factory
        self._clock = clock

    def write(self, worker: str, traffic: dict[str, Traffic]) -> None:
        """Record `worker`'s traffic per service, and its heartbeat, in one transaction."""
        if not traffic:
            return
        now = self._clock.now()
        with transaction(self._factory) as db:
            for service, seen in sorted(traffic.items()):  # a fixed order: no deadlock
                values = {
                    "last_seen": seen.last_seen,
                    "open_connections": seen.open_connections,
                    "heartbeat_at": now,
                }
                done = db.execute(
                    update(ServiceActivity)
                    .where(ServiceActivity.service == service, ServiceActivity.worker == worker)
                    .values(**values)
                )
                if getattr(done, "rowcount", 0) == 0:
                    db.add(ServiceActivity(service=service, worker=worker, **values))

    def merged(self) -> dict[str, Traffic]:
        """Every service's traffic over the workers: the latest request and the connections
        open on the workers still alive."""
        fresh_after = self._clock.now() - timedelta(seconds=STALE_SECONDS)
        merged: dict[str, Traffic] = {}
        with self._factory() as db:
            rows = db.scalars(select(ServiceActivity)).all()
        for row in rows:
            known = merged.get(row.service, Traffic(None, 0))
            last = known.last_seen
            if row.last_seen is not None and (last is None or row.last_seen > last):
                last = row.last_seen
            opened = row.open_connections if row.heartbeat_at >= fresh_after else 0
            merged[row.service] = Traffic(last, known.open_connections + opened)
        return merged

    def forget(self, service: str) -> None:
        """The service was stopped: its traffic so far no longer makes it a candidate."""
        with transaction(self._factory) as db:
            db.execute(delete(ServiceActivity).where(ServiceActivity.service == service))
