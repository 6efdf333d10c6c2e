"""The login flow: password -> (challenge | code) -> open session -> tokens -> audit.

One answer to "where does a login succeed?": `LoginFlow._open`. The primitives it stands on
(sessions, tokens, password hashing, the attempt limiter) live in auth/; MFA answers whether a
code is valid for a user, under its own failure budgets.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.events import Event, EventType, Outcome, Severity
from wakedock.audit.service import Auditor, record_event
from wakedock.auth.models import User
from wakedock.auth.passwords import PasswordHasher
from wakedock.auth.sessions import NewSession, Principal, RefreshReused, SessionStore
from wakedock.auth.tokens import AccessClaims, TokenCodec
from wakedock.auth.zerotrust import ZeroTrustGate
from wakedock.clock import Clock
from wakedock.config import RateLimitSettings
from wakedock.context import RequestContext
from wakedock.db import transaction
from wakedock.errors import DependencyUnavailable, InvalidCredentials, NotAuthenticated
from wakedock.login.challenges import Challenge, ChallengeBook
from wakedock.mfa.codes import CodeCheck
from wakedock.mfa.errors import MfaLoginRejected
from wakedock.mfa.service import VALID_CODES, MfaService, live_user
from wakedock.ratelimit.limiter import STORE_DOWN, AttemptLimiter
from wakedock.zerotrust.base import Attempt, Decision, Purpose

log = logging.getLogger("wakedock.auth")

LOGIN_BY_USER = "login:user"
LOGIN_BY_IP = "login:ip"


def login_budgets(limits: RateLimitSettings) -> dict[str, str]:
    """The login attempt budgets, per username and per client address, for the limiter."""
    return {LOGIN_BY_USER: limits.login_per_username, LOGIN_BY_IP: limits.login_per_ip}


_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
GENERIC_LOGIN_ERROR = "Invalid username or password"


@dataclass(frozen=True)
class Tokens:
    """An opened (or refreshed) session, with what its HTTP answer needs."""

    access_token: str
    access_expires_at: datetime
    refresh_token: str
    session_id: str
    session_secret: str
    user: User
    expires_in: int  # the access token's lifetime, in seconds
    cookie_max_age: int  # the session's (and its browser cookie's) lifetime, in seconds


class LoginFlow:
    """Sign-in, refresh and sign-out. Every outcome is written to the audit trail."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        clock: Clock,
        hasher: PasswordHasher,
        limiter: AttemptLimiter,
        sessions: SessionStore,
        codec: TokenCodec,
        mfa: MfaService,
        challenges: ChallengeBook,
        auditor: Auditor,
        gate: ZeroTrustGate | None = None,
    ) -> None:
        self._factory = factory
        self._clock = clock
        self._hasher = hasher
        self._limiter = limiter
        self._sessions = sessions
        self._codec = codec
        self._mfa = mfa
        self._challenges = challenges
        self._auditor = auditor
        self._gate = gate

    def login(
        self,
        username: str,
        password: str,
        context: RequestContext,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Tokens | Challenge:
        """Verify a password login; open a session, or ask for the second factor.

        The zero-trust gate weighs the address and the client first: a denied network or
        country is refused (403) before any budget or password is looked at, so it learns
        nothing. Then both failure budgets are checked (429), the password is verified in
        constant cost whether or not the user exists, and every failure gets one generic
        error. With the user known, the gate weighs the whole attempt (history, reputation):
        `deny` refuses, `step_up` needs the second factor (an account without one is refused).
        A user with MFA gets a challenge, unless `code` (one-step login) is given and valid.
        """
        name = username.strip().lower()
        ip = context.ip or "unknown"
        attempt = context.as_actor(name[:128]) if name else context
        weighed = self._weigh_address(context, headers or {})
        with self._limiter.serialised(f"user:{name}", f"ip:{ip}"):
            try:
                self._limiter.check_all(
                    [(LOGIN_BY_USER, name), (LOGIN_BY_IP, ip)],
                    on_limited=lambda: self._audit_limited(name, attempt),
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
                self._auditor.record(refused, attempt)
                raise
            with transaction(self._factory) as db:
                user = self._verify(db, name, password, attempt)
            if user is None:
                self._limiter.record_failure(LOGIN_BY_USER, name)
                self._limiter.record_failure(LOGIN_BY_IP, ip)
                if self._gate is not None and weighed is not None and name:
                    self._gate.record_failure(replace(weighed, username=name))
                raise InvalidCredentials(GENERIC_LOGIN_ERROR)
        try:
            self._limiter.reset(LOGIN_BY_USER, name)
        except DependencyUnavailable:
            # The password was right; an unreset counter only errs on the strict side.
            log.warning("could not reset the login failure counter (rate-limit store down)")
        if weighed is not None:
            weighed = replace(weighed, username=name, user_id=user.id)
            self._weigh_user(weighed, user, attempt)
        if user.mfa_enabled:
            if code is None:
                return self._challenges.issue(user, attempt)
            return self._second_factor(user.id, name, code, attempt, weighed=weighed)
        with transaction(self._factory) as db:
            tokens = self._open(db, user, attempt, method=None)
        self._remember(weighed)
        return tokens

    def _weigh_address(self, context: RequestContext, headers: Mapping[str, str]) -> Attempt | None:
        """The gate's first look, with no username: the network, the place, the client and
        the address's reputation. A deny is refused here (audited); anything else is decided
        with the user known, so it is not audited twice."""
        if self._gate is None or not self._gate.enabled:
            return None
        weighed = self._gate.attempt(Purpose.SIGN_IN, context, headers)
        if self._gate.weigh(weighed, context, only_deny=True).decision is Decision.DENY:
            raise self._gate.refuse(context)
        return weighed

    def _weigh_user(self, weighed: Attempt, user: User, context: RequestContext) -> None:
        """The gate's whole look, once the password proved who is asking."""
        assert self._gate is not None  # noqa: S101 (weighed only exists with a gate)
        decision = self._gate.weigh(weighed, context).decision
        if decision is Decision.DENY:
            raise self._gate.refuse(context)
        if decision is Decision.STEP_UP and not user.mfa_enabled:
            raise self._gate.step_up_without_mfa(context)
        # A step-up for a user with MFA: the code step every such sign-in has already is it.

    def _remember(self, weighed: Attempt | None) -> None:
        if self._gate is not None and weighed is not None:
            self._gate.remember(weighed)

    def complete_mfa(
        self,
        challenge_token: str,
        code: str,
        context: RequestContext,
        headers: Mapping[str, str] | None = None,
    ) -> Tokens:
        """The second step of an MFA login: the challenge token and a TOTP or backup code."""
        try:
            claims = self._challenges.read(challenge_token)
        except NotAuthenticated:
            invalid = Event(
                EventType.MFA_FAILURE,
                Outcome.DENIED,
                details={"purpose": "login", "reason": "challenge token invalid or expired"},
            )
            self._auditor.record(invalid, context)
            raise
        with self._factory() as db:
            user = db.get(User, claims.user_id)
            name = user.username if user is not None else f"user:{claims.user_id}"
        weighed = None
        if self._gate is not None and self._gate.enabled and user is not None:
            weighed = self._gate.attempt(
                Purpose.SIGN_IN, context, headers or {}, username=name, user_id=user.id
            )
        try:
            return self._second_factor(claims.user_id, name, code, context, claims, weighed)
        except NotAuthenticated as exc:
            if not isinstance(exc, MfaLoginRejected):
                failed = Event(
                    EventType.MFA_FAILURE,
                    Outcome.DENIED,
                    target=name,
                    details={"purpose": "login", "reason": "challenge expired or used"},
                )
                self._auditor.record(failed, context)
            raise

    def _second_factor(
        self,
        user_id: int,
        name: str,
        code: str,
        context: RequestContext,
        claims: AccessClaims | None = None,
        weighed: Attempt | None = None,
    ) -> Tokens:
        """Ask MFA whether `code` is valid for the user (under its budgets); if so, spend the
        challenge (if any) and open the session, all in one transaction; the sign-in is then
        remembered for the zero-trust history."""

        def attempt(db: Session) -> tuple[CodeCheck, Tokens | None]:
            if claims is not None:
                self._challenges.check_live(db, claims)
            user = live_user(db, user_id)
            check = self._mfa.accept_code(db, user, code)
            if check not in VALID_CODES:
                return check, None
            if claims is not None:
                self._challenges.spend(db, claims)
            return check, self._open(db, user, context, method=check)

        tokens = self._mfa.guarded(name, context, "login", attempt, login=True)
        self._remember(weighed)
        return tokens

    def _open(
        self, db: Session, user: User, context: RequestContext, *, method: CodeCheck | None
    ) -> Tokens:
        """Where a login succeeds: a new session, its tokens and LOGIN_SUCCESS (after
        MFA_SUCCESS when a code was proven), in the caller's transaction."""
        now = self._clock.now()
        new = self._sessions.create(
            db,
            user,
            ip=context.ip or "unknown",
            user_agent=context.user_agent or "",
            mfa_at=now if method is not None else None,
        )
        as_user = context.as_actor(user.username)
        details = {"session": new.session.id}
        if method is not None:
            details = {"method": method.value, **details}
            mfa = Event(EventType.MFA_SUCCESS, target=user.username, details=details)
            record_event(db, mfa, as_user, at=now)
        success = Event(EventType.LOGIN_SUCCESS, target=user.username, details=details)
        record_event(db, success, as_user, at=now)
        return self._tokens(new, user)

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
            expires_in=self._codec.ttl_seconds,
            cookie_max_age=self._sessions.lifetime_seconds,
        )

    def _audit_limited(self, name: str, context: RequestContext) -> None:
        limited = Event(
            EventType.RATE_LIMIT_HIT, Outcome.DENIED, target=name, details={"scope": "login"}
        )
        self._auditor.record(limited, context)

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
                        context.as_actor(user.username),
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
                    context if actor is None else context.as_actor(actor),
                    at=self._clock.now(),
                )
            raise InvalidCredentials("Refresh token already used: session revoked") from None
        if rotated is None:
            unknown = Event(
                EventType.TOKEN_REFRESH, Outcome.FAILURE, details={"reason": "unknown or expired"}
            )
            self._auditor.record(unknown, context)
            raise InvalidCredentials("Invalid or expired refresh token")
        access, expires = self._codec.issue(user.id, row.id)
        return Tokens(
            access_token=access,
            access_expires_at=expires,
            refresh_token=new_refresh,
            session_id=row.id,
            session_secret="",
            user=user,
            expires_in=self._codec.ttl_seconds,
            cookie_max_age=self._sessions.lifetime_seconds,
        )

    def logout(self, principal: Principal, context: RequestContext) -> None:
        """End the caller's session."""
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
