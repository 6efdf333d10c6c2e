"""Server-side sessions: creation, validation, refresh rotation with reuse detection, revocation."""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Result, event, select, update
from sqlalchemy.orm import Session, sessionmaker

from wakedock.auth.models import RefreshToken, User, UserSession
from wakedock.clock import Clock
from wakedock.cluster.epoch import SharedEpoch

# last_seen_at is written at most this often per session (not on every request).
_TOUCH_EVERY = timedelta(seconds=60)


def changed_rows(result: Result[Any]) -> int:
    """Rows touched by an UPDATE (SQLAlchemy types execute() as a plain Result)."""
    return int(cast("CursorResult[Any]", result).rowcount)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """An authenticated user acting through one live session."""

    user_id: int
    username: str
    role: str
    session_id: str
    mfa_at: datetime | None
    created_at: datetime
    email: str | None = None
    mfa_enabled: bool = False
    via_cookie: bool = False


@dataclass(frozen=True)
class NewSession:
    session: UserSession
    secret: str
    refresh_token: str


class RefreshReused(Exception):
    """A refresh token was presented twice: the session is now revoked."""

    def __init__(self, session_id: str, user_id: int) -> None:
        super().__init__(session_id)
        self.session_id = session_id
        self.user_id = user_id


class SessionStore:
    """Sessions in the database, with a short in-memory cache of validated ones."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        clock: Clock,
        *,
        absolute_seconds: int,
        idle_seconds: int,
        cache_seconds: float,
        epoch: SharedEpoch | None = None,
    ) -> None:
        """`epoch`: shared by the worker processes of one server (cluster/epoch.py), so that a
        revocation in one clears the cache of every one; None with one process."""
        self._factory = factory
        self._clock = clock
        self._absolute = timedelta(seconds=absolute_seconds)
        self._idle = timedelta(seconds=idle_seconds)
        self._cache_seconds = cache_seconds
        # key -> (cached until, principal, session valid until), on the injected clock.
        self._cache: dict[str, tuple[datetime, Principal, datetime]] = {}
        self._lock = threading.Lock()
        self._epoch = epoch
        self._seen = epoch.read() if epoch is not None else b""

    @property
    def lifetime_seconds(self) -> int:
        """How long a session lives at most (its browser cookie's max-age)."""
        return int(self._absolute.total_seconds())

    # -- creation ------------------------------------------------------------------------
    def create(
        self, db: Session, user: User, *, ip: str, user_agent: str, mfa_at: datetime | None = None
    ) -> NewSession:
        """Open a session for `user` in the caller's transaction."""
        now = self._clock.now()
        secret = secrets.token_urlsafe(32)  # 256 bits
        row = UserSession(
            id=secrets.token_urlsafe(16),
            secret_hash=digest(secret),
            user_id=user.id,
            ip=ip[:45],
            user_agent=user_agent[:512],
            created_at=now,
            last_seen_at=now,
            expires_at=now + self._absolute,
            mfa_at=mfa_at,
            revoked=False,
        )
        db.add(row)
        db.flush()
        refresh = self._new_refresh(db, row.id)
        return NewSession(session=row, secret=secret, refresh_token=refresh)

    def _new_refresh(self, db: Session, session_id: str) -> str:
        token = secrets.token_urlsafe(32)
        db.add(
            RefreshToken(
                token_hash=digest(token), session_id=session_id, created_at=self._clock.now()
            )
        )
        return token

    # -- validation ----------------------------------------------------------------------
    def _live(self, row: UserSession, user: User, now: datetime) -> bool:
        return (
            not row.revoked
            and not user.disabled
            and now < row.expires_at
            and now < row.last_seen_at + self._idle
        )

    def principal(self, session_id: str, user_id: int | None = None) -> Principal | None:
        """The principal of a live session by its public id (bearer tokens), or None."""
        return self._lookup(("sid", session_id), user_id)

    def principal_by_secret(self, secret: str) -> Principal | None:
        """The principal of a live session by its secret (the browser cookie), or None."""
        return self._lookup(("secret", digest(secret)), None)

    def cached(self, session_id: str, user_id: int) -> Principal | None:
        """A recently validated principal from memory, without blocking; None if not cached.

        Lets the request path skip a worker thread and the database on the common case.
        """
        return self._from_cache(f"sid:{session_id}", user_id)

    def cached_by_secret(self, secret: str) -> Principal | None:
        return self._from_cache(f"secret:{digest(secret)}", None)

    def _from_cache(self, cache_key: str, user_id: int | None) -> Principal | None:
        now = self._clock.now()
        with self._lock:
            if self._epoch is not None:
                seen = self._epoch.read()
                if seen != self._seen:  # another worker revoked something: nothing is sure
                    self._cache.clear()
                    self._seen = seen
            cached = self._cache.get(cache_key)
        if cached and now < cached[0] and now < cached[2]:
            principal = cached[1]
            return principal if user_id in (None, principal.user_id) else None
        return None

    def _lookup(self, key: tuple[str, str], user_id: int | None) -> Principal | None:
        now = self._clock.now()
        cache_key = f"{key[0]}:{key[1]}"
        hit = self._from_cache(cache_key, user_id)
        if hit is not None:
            return hit
        with self._factory() as db, db.begin():
            column = UserSession.id if key[0] == "sid" else UserSession.secret_hash
            found = db.execute(
                select(UserSession, User)
                .join(User, User.id == UserSession.user_id)
                .where(column == key[1])
            ).first()
            if found is None:
                return None
            row, user = found
            if not self._live(row, user, now) or user_id not in (None, user.id):
                return None
            if now - row.last_seen_at >= _TOUCH_EVERY:
                row.last_seen_at = now
            principal = Principal(
                user_id=user.id,
                username=user.username,
                role=user.role,
                session_id=row.id,
                mfa_at=row.mfa_at,
                mfa_enabled=user.mfa_enabled,
                email=user.email,
                created_at=user.created_at,
                via_cookie=key[0] == "secret",
            )
            valid_until = min(row.expires_at, row.last_seen_at + self._idle)
        if self._cache_seconds > 0:
            with self._lock:
                if len(self._cache) > 50_000:
                    self._cache.clear()
                self._cache[cache_key] = (
                    now + timedelta(seconds=self._cache_seconds),
                    principal,
                    valid_until,
                )
        return principal

    def mark_mfa(self, db: Session, session_id: str, at: datetime) -> None:
        """Record that MFA was (re)proven in this session now."""
        db.execute(
            update(UserSession)
            .where(UserSession.id == session_id)
            .values(mfa_at=at)
            .execution_options(synchronize_session=False)
        )
        self.forget(db)

    def forget(self, db: Session | None = None) -> None:
        """Drop every cached validation (after any revocation in this process).

        With several workers, theirs too: at once, and again when `db`'s transaction commits
        (a worker that read the session in between must not keep what it read)."""
        with self._lock:
            self._cache.clear()
            if self._epoch is not None:
                self._seen = self._epoch.change()
        epoch = self._epoch
        if epoch is not None and db is not None:
            event.listen(db, "after_commit", lambda _session: epoch.change(), once=True)

    # -- refresh -------------------------------------------------------------------------
    def rotate_refresh(self, db: Session, token: str) -> tuple[UserSession, User, str] | None:
        """Spend a refresh token and return a new one, or None if it is unknown or dead.

        Raises RefreshReused when the token was already spent (the caller revokes the session).
        """
        now = self._clock.now()
        record = db.execute(
            select(RefreshToken).where(RefreshToken.token_hash == digest(token))
        ).scalar_one_or_none()
        if record is None:
            return None
        found = db.execute(
            select(UserSession, User)
            .join(User, User.id == UserSession.user_id)
            .where(UserSession.id == record.session_id)
        ).first()
        if found is None:
            return None
        row, user = found
        # Atomic single use: only one concurrent presenter can flip used_at from NULL.
        spent = changed_rows(
            db.execute(
                update(RefreshToken)
                .where(RefreshToken.id == record.id, RefreshToken.used_at.is_(None))
                .values(used_at=now)
            )
        )
        if spent != 1:
            # The caller revokes the session in a transaction this error does not roll back.
            raise RefreshReused(row.id, user.id)
        if not self._live(row, user, now):
            return None
        row.last_seen_at = now
        return row, user, self._new_refresh(db, row.id)

    # -- revocation ----------------------------------------------------------------------
    def revoke(self, db: Session, session_id: str, *, reason: str) -> bool:
        """Revoke one session; True if it was live."""
        changed = changed_rows(
            db.execute(
                update(UserSession)
                .where(UserSession.id == session_id, UserSession.revoked.is_(False))
                .values(revoked=True, revoked_at=self._clock.now(), revoked_reason=reason)
            )
        )
        self.forget(db)
        return bool(changed)

    def revoke_user(
        self, db: Session, user_id: int, *, reason: str, keep: str | None = None
    ) -> int:
        """Revoke every session of a user but `keep`; returns how many were revoked."""
        query = update(UserSession).where(
            UserSession.user_id == user_id, UserSession.revoked.is_(False)
        )
        if keep is not None:
            query = query.where(UserSession.id != keep)
        changed = changed_rows(
            db.execute(
                query.values(revoked=True, revoked_at=self._clock.now(), revoked_reason=reason)
            )
        )
        self.forget(db)
        return int(changed)

    def list_live(self, db: Session, user_id: int | None) -> list[UserSession]:
        """Live sessions of one user (or of everyone when user_id is None), newest first."""
        now = self._clock.now()
        query = select(UserSession).where(
            UserSession.revoked.is_(False),
            UserSession.expires_at > now,
            UserSession.last_seen_at > now - self._idle,
        )
        if user_id is not None:
            query = query.where(UserSession.user_id == user_id)
        return list(db.execute(query.order_by(UserSession.created_at.desc())).scalars())
