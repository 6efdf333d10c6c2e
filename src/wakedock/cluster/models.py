"""What the worker processes (and, later, replicas) of one deployment share in the database."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from wakedock.db import Base, UTCDateTime


class Lease(Base):
    """A named role one process holds until `expires_at` unless it renews it (the leader of
    the singletons, the wake of one service)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ServiceActivity(Base):
    """One worker's traffic to one service: its last request, and the connections it has open
    as of its last heartbeat (a dead worker's count expires with its heartbeat)."""

    __tablename__ = "service_activity"

    service: Mapped[str] = mapped_column(String(200), primary_key=True)
    worker: Mapped[str] = mapped_column(String(200), primary_key=True)
    last_seen: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    open_connections: Mapped[int] = mapped_column(Integer)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Claim(Base):
    """A key the first process to insert it has claimed until `expires_at` (a spent sign-in
    ticket, an audit event written by one worker only): cluster/claims.py."""

    __tablename__ = "claims"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
