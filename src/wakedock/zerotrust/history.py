"""What the behaviour and reputation signals read: each user's past sign-ins, and the failed
sign-ins of the last hours by address and username (tables of migration 0009).

Both stores are bounded and prune on write, in the same transaction, so neither table grows
with traffic: a user keeps the last `keep` sign-ins of the last `retention` (enough for the
unusual-hour histogram of someone who signs in often), and failures are kept for `retention`
(a day: reputation decays in hours). Every call blocks (a database round trip): the engine
runs signals in a worker thread, and the login flow records from one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, delete, exists, select
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from wakedock.db import transaction
from wakedock.zerotrust.base import Attempt, Place
from wakedock.zerotrust.models import USERNAME_LENGTH, SignInFailure, SignInRecord

# Sign-ins kept per user: about three months for someone who signs in five times a day.
KEEP_SIGN_INS = 500
SIGN_IN_RETENTION = timedelta(days=180)
FAILURE_RETENTION = timedelta(hours=24)
# Failures read per question: the reputation scores saturate long before this many.
FAILURES_READ = 200


@dataclass(frozen=True)
class PastSignIn:
    """One remembered sign-in: where (as far as the databases knew then) and when."""

    address: str
    place: Place
    at: datetime
    user_agent_family: str | None = None


@dataclass(frozen=True)
class Failure:
    """One failed sign-in: from which address, for which username, when."""

    address: str
    username: str
    at: datetime


def normalise_username(username: str) -> str:
    """Usernames are case-insensitive and stored lower case (users/service.py)."""
    return username.strip().lower()[:USERNAME_LENGTH]


class SignInHistory:
    """Each user's past sign-ins, for the behaviour signals (signals/history.py)."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        *,
        keep: int = KEEP_SIGN_INS,
        retention: timedelta = SIGN_IN_RETENTION,
    ) -> None:
        self._factory = factory
        self._keep = keep
        self._retention = retention

    def remember(self, attempt: Attempt, *, user_agent_family: str | None = None) -> None:
        """Record a successful sign-in (or a session seen at a new address) of `attempt.user_id`;
        drop that user's rows beyond the last `keep` and older than `retention`."""
        if attempt.user_id is None:
            raise ValueError("only a known user's sign-in is remembered")
        user_id, place = attempt.user_id, attempt.place
        with transaction(self._factory) as db:
            db.add(
                SignInRecord(
                    user_id=user_id,
                    address=attempt.address,
                    country=place.country,
                    latitude=place.latitude,
                    longitude=place.longitude,
                    accuracy_km=place.accuracy_km,
                    user_agent_family=user_agent_family,
                    at=attempt.at,
                )
            )
            db.flush()
            kept = (
                select(SignInRecord.id)
                .where(SignInRecord.user_id == user_id)
                .order_by(SignInRecord.at.desc(), SignInRecord.id.desc())
                .limit(self._keep)
            )
            db.execute(
                delete(SignInRecord).where(
                    SignInRecord.user_id == user_id,
                    (SignInRecord.id.not_in(kept.scalar_subquery()))
                    | (SignInRecord.at < attempt.at - self._retention),
                )
            )

    def prune(self, now: datetime) -> int:
        """Drop every user's rows older than `retention` (users who stopped signing in keep
        theirs until this runs); returns how many went."""
        with transaction(self._factory) as db:
            result = db.execute(delete(SignInRecord).where(SignInRecord.at < now - self._retention))
        return int(cast("CursorResult[Any]", result).rowcount)

    def has_history(self, user_id: int) -> bool:
        """Whether the user has signed in before (a first sign-in is not suspicious by itself)."""
        with self._factory() as db:
            return bool(db.scalar(select(exists().where(SignInRecord.user_id == user_id))))

    def seen_address(self, user_id: int, address: str) -> bool:
        with self._factory() as db:
            query = exists().where(SignInRecord.user_id == user_id, SignInRecord.address == address)
            return bool(db.scalar(select(query)))

    def countries(self, user_id: int) -> frozenset[str]:
        """The countries the user has signed in from (those the database could place)."""
        return self._distinct(user_id, SignInRecord.country)

    def browsers(self, user_id: int) -> frozenset[str]:
        """The browser families the user has signed in with (those that were named)."""
        return self._distinct(user_id, SignInRecord.user_agent_family)

    def _distinct(self, user_id: int, column: InstrumentedAttribute[str | None]) -> frozenset[str]:
        with self._factory() as db:
            rows = db.scalars(
                select(column)
                .where(SignInRecord.user_id == user_id, column.is_not(None))
                .distinct()
            ).all()
        return frozenset(row for row in rows if row is not None)

    def last(self, user_id: int, *, at_or_before: datetime) -> PastSignIn | None:
        """The user's latest sign-in up to `at_or_before`."""
        with self._factory() as db:
            row = db.scalars(
                select(SignInRecord)
                .where(SignInRecord.user_id == user_id, SignInRecord.at <= at_or_before)
                .order_by(SignInRecord.at.desc(), SignInRecord.id.desc())
                .limit(1)
            ).first()
        if row is None:
            return None
        place = Place(
            country=row.country,
            latitude=row.latitude,
            longitude=row.longitude,
            accuracy_km=row.accuracy_km,
        )
        return PastSignIn(row.address, place, row.at, row.user_agent_family)

    def addresses_since(self, user_id: int, since: datetime) -> frozenset[str]:
        """The distinct addresses the user signed in from since `since`."""
        with self._factory() as db:
            rows = db.scalars(
                select(SignInRecord.address)
                .where(SignInRecord.user_id == user_id, SignInRecord.at >= since)
                .distinct()
            ).all()
        return frozenset(rows)

    def times(self, user_id: int) -> list[datetime]:
        """When the user signed in (at most `keep` rows), oldest first."""
        with self._factory() as db:
            rows = db.scalars(
                select(SignInRecord.at)
                .where(SignInRecord.user_id == user_id)
                .order_by(SignInRecord.at)
            ).all()
        return list(rows)


class SignInFailures:
    """Failed sign-ins of the last `retention`, for the reputation signals."""

    def __init__(
        self, factory: sessionmaker[Session], *, retention: timedelta = FAILURE_RETENTION
    ) -> None:
        self._factory = factory
        self._retention = retention

    @property
    def retention(self) -> timedelta:
        return self._retention

    def record_failure(self, address: str, username: str, at: datetime) -> None:
        """Record one failed sign-in (wrong password, unknown user, wrong second factor);
        drop every failure older than `retention` in the same transaction."""
        with transaction(self._factory) as db:
            db.add(SignInFailure(address=address, username=normalise_username(username), at=at))
            db.execute(delete(SignInFailure).where(SignInFailure.at < at - self._retention))

    def from_address(self, address: str, since: datetime) -> list[Failure]:
        """The latest failures from `address` since `since`, newest first (bounded)."""
        return self._read(SignInFailure.address == address, since)

    def for_username(self, username: str, since: datetime) -> list[Failure]:
        """The latest failures for `username` since `since`, newest first (bounded)."""
        return self._read(SignInFailure.username == normalise_username(username), since)

    def _read(self, condition: ColumnElement[bool], since: datetime) -> list[Failure]:
        with self._factory() as db:
            rows = db.execute(
                select(SignInFailure.address, SignInFailure.username, SignInFailure.at)
                .where(condition, SignInFailure.at >= since)
                .order_by(SignInFailure.at.desc())
                .limit(FAILURES_READ)
            ).all()
        return [Failure(row.address, row.username, row.at) for row in rows]
