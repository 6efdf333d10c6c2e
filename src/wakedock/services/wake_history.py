"""How long each service took to wake, kept in the database: the last `KEEP` wakes per service.

The wake coordinator keeps the time to ready of the last wake in memory only (its process, since
it started); the service page's chart needs the wakes before it, across restarts and workers.
The worker that started the container records the wake (a worker that only waited for another's
start does not), and the oldest rows beyond `KEEP` go in the same transaction, so the table
stays bounded whatever the traffic. The rows go with their service (ON DELETE CASCADE).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Float, ForeignKey, Integer, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from wakedock.db import Base, UTCDateTime, transaction

# Wakes kept per service: what the chart shows.
KEEP = 50


class WakeRecord(Base):
    """One wake that reached ready: when, and how many seconds after it was asked for."""

    __tablename__ = "service_wakes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("services.id", ondelete="CASCADE"), index=True
    )
    ready_at: Mapped[datetime] = mapped_column(UTCDateTime())
    seconds: Mapped[float] = mapped_column(Float)


@dataclass(frozen=True)
class Wake:
    """A past wake as the service page shows it."""

    ready_at: datetime
    seconds: float


class WakeHistory:
    """Record wakes and read the last ones back (blocking: call from a worker thread)."""

    def __init__(self, factory: sessionmaker[Session], keep: int = KEEP) -> None:
        self._factory = factory
        self._keep = keep

    def record(self, service_id: int, seconds: float, at: datetime) -> None:
        """Add one wake of `service_id`; drop the ones older than the last `keep`."""
        with transaction(self._factory) as db:
            db.add(WakeRecord(service_id=service_id, ready_at=at, seconds=seconds))
            db.flush()
            kept = (
                select(WakeRecord.id)
                .where(WakeRecord.service_id == service_id)
                .order_by(WakeRecord.id.desc())
                .limit(self._keep)
            )
            db.execute(
                delete(WakeRecord).where(
                    WakeRecord.service_id == service_id,
                    WakeRecord.id.not_in(kept.scalar_subquery()),
                )
            )

    def recent(self, service_id: int) -> list[Wake]:
        """The last `keep` wakes of `service_id`, oldest first."""
        with self._factory() as db:
            rows = db.execute(
                select(WakeRecord.ready_at, WakeRecord.seconds)
                .where(WakeRecord.service_id == service_id)
                .order_by(WakeRecord.id.desc())
                .limit(self._keep)
            ).all()
        return [Wake(row.ready_at, float(row.seconds)) for row in reversed(rows)]
