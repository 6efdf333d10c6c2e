"""Leases in the database: one holder per name at a time, for a bounded time.

A lease is taken when it is free or expired, renewed by its holder, and released. Every step is
one conditional statement, so two processes (workers of one server, or replicas on several
hosts sharing the database) never both hold a name: on PostgreSQL a concurrent UPDATE of the
row waits and re-checks the condition, a concurrent first INSERT fails on the primary key; on
SQLite writes are serialised.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from wakedock.clock import Clock
from wakedock.cluster.models import Lease
from wakedock.db import transaction


def process_name() -> str:
    """Who holds a lease: host and process id, unique among live processes."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Leases:
    def __init__(self, factory: sessionmaker[Session], clock: Clock) -> None:
        self._factory = factory
        self._clock = clock

    def acquire(self, name: str, holder: str, ttl_seconds: float) -> bool:
        """Take `name` (free, expired, or already `holder`'s) until now + ttl; True if held."""
        now = self._clock.now()
        until = now + timedelta(seconds=ttl_seconds)
        with transaction(self._factory) as db:
            taken = db.execute(
                update(Lease)
                .where(Lease.name == name, or_(Lease.holder == holder, Lease.expires_at <= now))
                .values(holder=holder, expires_at=until)
            )
            if getattr(taken, "rowcount", 0) == 1:
                return True
            if db.get(Lease, name) is not None:
                return False  # held by someone else
        try:
            with transaction(self._factory) as db:
                db.add(Lease(name=name, holder=holder, expires_at=until))
        except IntegrityError:
            return False  # another process inserted it first
        return True

    def release(self, name: str, holder: str) -> None:
        """Give `name` up now, if `holder` still holds it."""
        with transaction(self._factory) as db:
            db.execute(delete(Lease).where(Lease.name == name, Lease.holder == holder))

    def holder(self, name: str) -> str | None:
        """Who holds `name` now (None when free or expired)."""
        with self._factory() as db:
            row = db.scalar(select(Lease).where(Lease.name == name))
        if row is None or row.expires_at <= self._clock.now():
            return None
        return row.holder
