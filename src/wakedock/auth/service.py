"""Login, refresh, logout, password change, registration: the authentication rules."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.events import Event, EventType, Outcome, Severity
from wakedock.audit.service import record_event
from wakedock.auth.passwords import PasswordHasher
from wakedock.auth.sessions import NewSession, Principal, RefreshReused, SessionStore
from wakedock.auth.tokens import TokenCodec
from wakedock.clock import Clock
from wakedock.context import RequestContext
from wakedock.db import transaction
from wakedock.errors import (
    DependencyUnavailable,
    InvalidCredentials,
    PermissionDenied,
)
from wakedock.mfa.service import Challenge, MfaService
from wakedock.ratelimit.limiter import STORE_DOWN, AttemptLimiter
from wakedock.users.models import User
from wakedock.users.service import UserService

log = logging.getLogger("wakedock.auth")

LOGIN_BY_USER = "login:user"
LOGIN_BY_IP = "login:ip"
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
GENERIC_LOGIN_ERROR = "Invalid username or password"


@dataclass(frozen=True)
class Tokens:
    access_token: str
    access_expires_at: datetime
    refresh_token: str
    session_id: str
    session_secret: str
    user: User


class AuthService:
    """Authentication flows. Every outcome is written to the audit trail."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        clock: Clock,
        hasher: PasswordHasher,
        limiter: AttemptLimiter,
        sessions: SessionStore,
        codec: TokenCodec,
        users: UserService,
        mfa: MfaService,
    ) -> None:
        self._factory = factory
        self._clock = clock
        self._hasher = hasher
        self._limiter = limiter
        self._sessions = sessions
        self._codec = codec
        self._users = users
        self._mfa = mfa

    def audit(self, event: Event, context: RequestContext) -> None:
        """Record an event in a transaction of its own (for denials and failures)."""
        with transaction(self._factory) as db:
            record_event(db, event, context, at=self._clock.now())

    def _audit_limited(self, name: str, scope: str, context: RequestContext) -> None:
        limited = Event(
            EventType.RATE_LIMIT_HIT, Outcome.DENIED, target=name, details={"scope": scope}
        )
        self.audit(limited, context)

    def login(
        self, username: str, password: str, context: RequestContext, code: str | None = None
    ) -> Tokens | Challenge:
        """Verify a password login; open a session, or ask for the second factor.

        Checks both failure budgets first (429), verifies in constant cost whether or not the
        user exists, and answers one generic error for every failure. A user with MFA gets a
        challenge, unless `code` (one-step login) is given and valid.
        """
        name = username.strip().lower()
        ip = context.ip or "unknown"
        attempt = RequestContext(
            ip=context.ip,
            user_agent=context.user_agent,
            request_id=context.request_id,
            actor=name[:128] or None,
        )
        with self._limiter.serialised(f"user:{name}", f"ip:{ip}"):
            try:
                self._limiter.check_all(
                    [(LOGIN_BY_USER, name), (LOGIN_BY_IP, ip)],
                    on_limited=lambda: self._audit_limited(name, "login", attempt),
                )
            except DependencyUnavailable:
                # Refused (fail closed) before the password is even looked at: the trail,
                # which lives in the database, still records the attempt.
                refused = Event(
                    EventType.LOGIN_FAILURE,
                    Outcome.DENIED,
                    target=name,
                    details={"reason": STORE_DOWN},
                )
                self.audit(refused, attempt)
                raise
            with transaction(self._factory) as db:
                user = self._verify(db, name, password, attempt)
            if user is None:
                self._limiter.record_failure(LOGIN_BY_USER, name)
                self._limiter.record_failure(LOGIN_BY_IP, ip)
                raise InvalidCredentials(GENERIC_LOGIN_ERROR)
        try:
            self._limiter.reset(LOGIN_BY_USER, name)
        except DependencyUnavailable:
            # The password was right; an unreset counter only errs on the strict side.
            log.warning("could not reset the login failure counter (rate-limit store down)")
        if user.mfa_enabled:
            if code is None:
                return self._mfa.issue_challenge(user, attempt)
            return self._tokens(*self._mfa.login_with_code(user, code, attempt))
        with transaction(self._factory) as db:
            new = self._sessions.create(db, user, ip=ip, user_agent=context.user_agent or "")
            success = Event(
                EventType.LOGIN_SUCCESS, target=name, details={"session": new.session.id}
            )
            record_event(db, success, attempt, at=self._clock.now())
        return self._tokens(new, user)

    def complete_mfa(self, challenge_token: str, code: str, context: RequestContext) -> Tokens:
        """The second step of an MFA login."""
        return self._tokens(*self._mfa.complete_challenge(challenge_token, code, context))

    def _verify(
        self, db: Session, name: str, password: str, attempt: RequestContext
    ) -> User | None:
        """Check the password (same cost for unknown users); the user, or None."""
        user = None
        if _USERNAME.match(name):
            user = db.execute(select(User).where(User.username == name)).scalar_one_or_none()
        valid = self._hasher.verify(user.password_hash if user else None, password)
        if user is None or not valid or user.disabled:
            reason = "unknown_user" if user is None else ("disabled" if valid else "bad_password")
            failure = Event(
                EventType.LOGIN_FAILURE, Outcome.FAILURE, target=name, details={"reason": reason}
            )
            record_event(db, failure, attempt, at=self._clock.now())
            return None
        if self._hasher.needs_rehash(user.password_hash):
            user.password_hash = self._hasher.hash(password)
        return user

    def _tokens(self, new: NewSession, user: User) -> Tokens:
        """An access token for a freshly opened session."""
        access, expires = self._codec.issue(user.id, new.session.id)
        return Tokens(
            access_token=access,
            access_expires_at=expires,
            refresh_token=new.refresh_token,
            session_id=new.session.id,
            session_secret=new.secret,
            user=user,
        )

    def refresh(self, refresh_token: str, context: RequestContext) -> Tokens:
        """Spend a refresh token for a new pair. A reused token revokes the whole session."""
        try:
            with transaction(self._factory) as db:
                rotated = self._sessions.rotate_refresh(db, refresh_token)
                if rotated is not None:
                    row, user, new_refresh = rotated
                    record_event(
                        db,
                        Event(
                            EventType.TOKEN_REFRESH,
                            target=user.username,
                            details={"session": row.id},
                        ),
                        _as(context, user.username),
                        at=self._clock.now(),
                    )
        except RefreshReused as reused:
            with transaction(self._factory) as db:
                user_row = db.get(User, reused.user_id)
                actor = user_row.username if user_row else None
                # Revoke in a transaction that is not rolled back by the error below.
                self._sessions.revoke(db, reused.session_id, reason="refresh_token_reuse")
                record_event(
                    db,
                    Event(
                        EventType.TOKEN_REUSE,
                        Outcome.DENIED,
                        severity=Severity.HIGH,
                        target=actor,
                        details={"session": reused.session_id, "action": "session revoked"},
                    ),
                    _as(context, actor),
                    at=self._clock.now(),
                )
            raise InvalidCredentials("Refresh token already used: session revoked") from None
        if rotated is None:
            self.audit(
                Event(
                    EventType.TOKEN_REFRESH,
                    Outcome.FAILURE,
                    details={"reason": "unknown or expired"},
                ),
                context,
            )
            raise InvalidCredentials("Invalid or expired refresh token")
        access, expires = self._codec.issue(user.id, row.id)
        return Tokens(
            access_token=access,
            access_expires_at=expires,
            refresh_token=new_refresh,
            session_id=row.id,
            session_secret="",
            user=user,
        )

    def logout(self, principal: Principal, context: RequestContext) -> None:
        with transaction(self._factory) as db:
            self._sessions.revoke(db, principal.session_id, reason="logout")
            record_event(
                db,
                Event(
                    EventType.LOGOUT,
                    target=principal.username,
                    details={"session": principal.session_id},
                ),
                context,
                at=self._clock.now(),
            )

    def change_password(
        self, principal: Principal, current: str, new: str, context: RequestContext
    ) -> None:
        """Change one's own password. Wrong guesses of the current one spend the login budget."""
        name = principal.username
        with self._limiter.serialised(f"user:{name}"):
            self._limiter.check_all(
                [(LOGIN_BY_USER, name)],
                on_limited=lambda: self._audit_limited(name, "password_change", context),
            )
            try:
                with transaction(self._factory) as db:
                    user = self._users.get(db, principal.user_id)
                    self._users.change_own_password(
                        db, context, user, current, new, principal.session_id
                    )
            except PermissionDenied:
                self._limiter.record_failure(LOGIN_BY_USER, name)
                self.audit(
                    Event(
                        EventType.PASSWORD_CHANGE,
                        Outcome.FAILURE,
                        target=name,
                        details={"reason": "wrong current password"},
                    ),
                    context,
                )
                raise

    def user_count(self) -> int:
        with self._factory() as db:
            return int(db.execute(select(func.count(User.id))).scalar_one())


def _as(context: RequestContext, actor: str | None) -> RequestContext:
    return RequestContext(
        ip=context.ip, user_agent=context.user_agent, request_id=context.request_id, actor=actor
    )
