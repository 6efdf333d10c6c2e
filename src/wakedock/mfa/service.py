"""MFA rules: enrolment, code checks (replay-proof, rate limited), challenges, step-up, resets."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.events import Event, EventType, Outcome
from wakedock.audit.service import record_event
from wakedock.auth.passwords import PasswordHasher
from wakedock.auth.sessions import NewSession, Principal, SessionStore, changed_rows
from wakedock.auth.tokens import TokenCodec
from wakedock.clock import Clock
from wakedock.config import MfaSettings
from wakedock.context import RequestContext
from wakedock.db import transaction
from wakedock.errors import Conflict, DependencyUnavailable, NotAuthenticated
from wakedock.mfa import totp
from wakedock.mfa.codes import CodeBook, CodeCheck, seal_context
from wakedock.mfa.crypto import SecretBox
from wakedock.mfa.errors import (
    EnrolmentRequired,
    MfaCodeRejected,
    MfaLoginRejected,
    StepUpRequired,
)
from wakedock.mfa.models import BackupCode, MfaChallenge
from wakedock.ratelimit.limiter import STORE_DOWN, AttemptLimiter
from wakedock.users.models import User

log = logging.getLogger("wakedock.mfa")

MFA_BY_USER = "mfa:user"
MFA_BY_IP = "mfa:ip"
CHALLENGE_TYPE = "mfa_challenge"
# An unconfirmed enrolment secret is forgotten after this long.
_PENDING_FOR = timedelta(minutes=15)
T = TypeVar("T")


@dataclass(frozen=True)
class Enrolment:
    secret: str
    otpauth_uri: str
    qr_png_base64: str


@dataclass(frozen=True)
class Challenge:
    token: str
    expires_in: int


@dataclass(frozen=True)
class MfaStatus:
    enabled: bool
    required: bool
    enabled_at: datetime | None
    backup_codes_remaining: int


class MfaService:
    """Everything about second factors. Every success, failure and change is audited."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        clock: Clock,
        box: SecretBox,
        hasher: PasswordHasher,
        limiter: AttemptLimiter,
        sessions: SessionStore,
        challenges: TokenCodec,
        settings: MfaSettings,
    ) -> None:
        self._factory = factory
        self._clock = clock
        self._box = box
        self._hasher = hasher
        self._codes = CodeBook(clock, box, hasher)
        self._limiter = limiter
        self._sessions = sessions
        self._challenges = challenges
        self._settings = settings

    # -- policy ---------------------------------------------------------------------------
    def required_for(self, role: str) -> bool:
        return role in self._settings.required_roles

    def must_enrol(self, role: str, mfa_enabled: bool) -> bool:
        """True if an account of `role` must enrol MFA before doing anything else."""
        return self.required_for(role) and not mfa_enabled

    def enrolment_pending(self, principal: Principal) -> bool:
        """True if this principal must enrol MFA before doing anything else."""
        return self.must_enrol(principal.role, principal.mfa_enabled)

    def require_fresh(self, principal: Principal, context: RequestContext) -> None:
        """Raise StepUpRequired (audited) unless MFA was proven in this session lately."""
        window = timedelta(seconds=self._settings.step_up_seconds)
        if principal.mfa_at is not None and self._clock.now() - principal.mfa_at <= window:
            return
        refused = Event(
            EventType.FORBIDDEN_ACCESS,
            Outcome.DENIED,
            target=principal.username,
            details={"reason": "step-up MFA required"},
        )
        self._audit(refused, context)
        raise StepUpRequired("this action needs a recent MFA proof: POST /api/v1/auth/mfa/step-up")

    # -- the guarded check ----------------------------------------------------------------
    def _audit(self, event: Event, context: RequestContext) -> None:
        with transaction(self._factory) as db:
            record_event(db, event, context, at=self._clock.now())

    @contextmanager
    def _budget(self, name: str, context: RequestContext, purpose: str) -> Iterator[None]:
        ip = context.ip or "unknown"
        with self._limiter.serialised(f"mfa-user:{name}", f"mfa-ip:{ip}"):
            limited = Event(
                EventType.RATE_LIMIT_HIT,
                Outcome.DENIED,
                target=name,
                details={"scope": "mfa", "purpose": purpose},
            )
            try:
                self._limiter.check_all(
                    [(MFA_BY_USER, name), (MFA_BY_IP, ip)],
                    on_limited=lambda: self._audit(limited, context),
                )
            except DependencyUnavailable:  # refused, fail closed: still in the audit trail
                details = {"purpose": purpose, "reason": STORE_DOWN}
                self._audit(
                    Event(EventType.MFA_FAILURE, Outcome.DENIED, name, details=details), context
                )
                raise
            yield

    def _guarded(
        self,
        name: str,
        context: RequestContext,
        purpose: str,
        attempt: Callable[[Session], tuple[CodeCheck, T | None]],
        *,
        login: bool = False,
    ) -> T:
        """Run `attempt` under the MFA failure budgets; count, audit and refuse failures."""
        with self._budget(name, context, purpose):
            with transaction(self._factory) as db:
                check, result = attempt(db)
            if result is None:
                self._limiter.record_failure(MFA_BY_USER, name)
                self._limiter.record_failure(MFA_BY_IP, context.ip or "unknown")
                failed = Event(
                    EventType.MFA_FAILURE,
                    Outcome.FAILURE,
                    target=name,
                    details={"purpose": purpose, "reason": check.value},
                )
                self._audit(failed, context)
                error = MfaLoginRejected if login else MfaCodeRejected
                raise error("invalid or already used code")
        return result

    @staticmethod
    def _user(db: Session, user_id: int) -> User:
        user = db.get(User, user_id)
        if user is None or user.disabled:
            raise NotAuthenticated("Session expired or revoked")
        return user

    # -- enrolment ------------------------------------------------------------------------
    def begin_enrolment(self, principal: Principal, context: RequestContext) -> Enrolment:
        """A fresh secret, its otpauth URI and QR code. Nothing is active until confirmed."""
        secret = totp.new_secret()
        with transaction(self._factory) as db:
            user = self._user(db, principal.user_id)
            if user.mfa_enabled:
                raise Conflict("MFA is already enabled: disable it first to enrol a new device")
            now = self._clock.now()
            user.mfa_pending_secret = self._box.seal(secret, seal_context(user.id, "pending"))
            user.mfa_pending_at = now
            account = user.email or user.username
            # A new secret now exists (pending): who asked, when, from where.
            started = Event(EventType.MFA_ENROL_START, target=user.username)
            record_event(db, started, context, at=now)
        uri = totp.provisioning_uri(secret, account)
        return Enrolment(secret=secret, otpauth_uri=uri, qr_png_base64=totp.qr_png_base64(uri))

    def confirm_enrolment(
        self, principal: Principal, code: str, context: RequestContext
    ) -> list[str]:
        """Activate MFA with a first valid code; returns the ten backup codes (shown once)."""

        def attempt(db: Session) -> tuple[CodeCheck, list[str] | None]:
            user = self._user(db, principal.user_id)
            now = self._clock.now()
            if user.mfa_enabled:
                raise Conflict("MFA is already enabled")
            if (
                user.mfa_pending_secret is None
                or user.mfa_pending_at is None
                or (now - user.mfa_pending_at > _PENDING_FOR)
            ):
                self._audit(
                    Event(
                        EventType.MFA_FAILURE,
                        Outcome.FAILURE,
                        target=user.username,
                        details={"reason": "no enrolment in progress"},
                    ),
                    context,
                )
                raise Conflict("no enrolment in progress: POST /api/v1/auth/mfa/setup first")
            try:
                secret = self._box.open(user.mfa_pending_secret, seal_context(user.id, "pending"))
            except ValueError:
                log.error("the pending MFA secret of user %s does not open", user.id)
                return CodeCheck.WRONG, None
            step = totp.matching_step(secret, code, now)
            if step is None:
                return CodeCheck.WRONG, None
            user.mfa_secret = self._box.seal(secret, seal_context(user.id, "totp"))
            user.mfa_enabled = True
            user.mfa_enabled_at = now
            user.mfa_last_step = step
            user.mfa_pending_secret = None
            user.mfa_pending_at = None
            codes = self._codes.new_backup_codes(db, user)
            self._sessions.mark_mfa(db, principal.session_id, now)
            record_event(db, Event(EventType.MFA_ENROL, target=user.username), context, at=now)
            return CodeCheck.TOTP, codes

        return self._guarded(principal.username, context, "enrolment", attempt)

    # -- login ----------------------------------------------------------------------------
    def issue_challenge(self, user: User, context: RequestContext) -> Challenge:
        """The password step passed: a 5-minute, single-use challenge for the second factor."""
        now = self._clock.now()
        row = MfaChallenge(
            id=secrets.token_urlsafe(16),
            user_id=user.id,
            ip=(context.ip or "unknown")[:45],
            user_agent=(context.user_agent or "")[:512],
            created_at=now,
            expires_at=now + timedelta(seconds=self._settings.challenge_seconds),
        )
        with transaction(self._factory) as db:
            db.add(row)
        token, _ = self._challenges.issue(user.id, row.id)
        return Challenge(token=token, expires_in=self._settings.challenge_seconds)

    def _open_session(
        self, db: Session, user: User, check: CodeCheck, context: RequestContext
    ) -> NewSession:
        now = self._clock.now()
        new = self._sessions.create(
            db, user, ip=context.ip or "unknown", user_agent=context.user_agent or "", mfa_at=now
        )
        as_user = RequestContext(
            ip=context.ip,
            user_agent=context.user_agent,
            request_id=context.request_id,
            actor=user.username,
        )
        details = {"method": check.value, "session": new.session.id}
        record_event(
            db, Event(EventType.MFA_SUCCESS, target=user.username, details=details), as_user, at=now
        )
        record_event(
            db,
            Event(EventType.LOGIN_SUCCESS, target=user.username, details=details),
            as_user,
            at=now,
        )
        return new

    def login_with_code(
        self, user: User, code: str, context: RequestContext
    ) -> tuple[NewSession, User]:
        """One-step login: the password was right, the code comes in the same request."""

        def attempt(db: Session) -> tuple[CodeCheck, tuple[NewSession, User] | None]:
            fresh = self._user(db, user.id)
            check = self._codes.accept(db, fresh, code)
            if check not in (CodeCheck.TOTP, CodeCheck.BACKUP):
                return check, None
            return check, (self._open_session(db, fresh, check, context), fresh)

        return self._guarded(user.username, context, "login", attempt, login=True)

    def complete_challenge(
        self, token: str, code: str, context: RequestContext
    ) -> tuple[NewSession, User]:
        """Second step of an MFA login: challenge token + TOTP or backup code -> session."""
        try:
            claims = self._challenges.decode(token)
        except NotAuthenticated:
            invalid = Event(
                EventType.MFA_FAILURE,
                Outcome.DENIED,
                details={"purpose": "login", "reason": "challenge token invalid or expired"},
            )
            self._audit(invalid, context)
            raise
        with self._factory() as db:
            user = db.get(User, claims.user_id)
            name = user.username if user is not None else f"user:{claims.user_id}"

        def attempt(db: Session) -> tuple[CodeCheck, tuple[NewSession, User] | None]:
            now = self._clock.now()
            row = db.get(MfaChallenge, claims.session_id)
            if (
                row is None
                or row.user_id != claims.user_id
                or row.used_at is not None
                or (now >= row.expires_at)
            ):
                raise NotAuthenticated("MFA challenge expired or already used: log in again")
            fresh = self._user(db, claims.user_id)
            check = self._codes.accept(db, fresh, code)
            if check not in (CodeCheck.TOTP, CodeCheck.BACKUP):
                return check, None
            used = changed_rows(
                db.execute(
                    update(MfaChallenge)
                    .where(MfaChallenge.id == row.id, MfaChallenge.used_at.is_(None))
                    .values(used_at=now)
                    .execution_options(synchronize_session=False)
                )
            )
            if used != 1:
                raise NotAuthenticated("MFA challenge expired or already used: log in again")
            return check, (self._open_session(db, fresh, check, context), fresh)

        try:
            return self._guarded(name, context, "login", attempt, login=True)
        except NotAuthenticated as exc:
            if not isinstance(exc, MfaLoginRejected):
                failed = Event(
                    EventType.MFA_FAILURE,
                    Outcome.DENIED,
                    target=name,
                    details={"purpose": "login", "reason": "challenge expired or used"},
                )
                self._audit(failed, context)
            raise

    # -- management -----------------------------------------------------------------------
    def step_up(self, principal: Principal, code: str, context: RequestContext) -> datetime:
        """Prove MFA again in this session (for sensitive actions); returns the proof time."""

        def attempt(db: Session) -> tuple[CodeCheck, datetime | None]:
            user = self._user(db, principal.user_id)
            if not user.mfa_enabled:
                raise EnrolmentRequired("enrol MFA first: POST /api/v1/auth/mfa/setup")
            check = self._codes.accept(db, user, code)
            if check not in (CodeCheck.TOTP, CodeCheck.BACKUP):
                return check, None
            now = self._clock.now()
            self._sessions.mark_mfa(db, principal.session_id, now)
            event = Event(
                EventType.MFA_STEP_UP, target=user.username, details={"method": check.value}
            )
            record_event(db, event, context, at=now)
            return check, now

        return self._guarded(principal.username, context, "step_up", attempt)

    def disable(
        self, principal: Principal, password: str, code: str, context: RequestContext
    ) -> None:
        """Turn MFA off for oneself: needs the password and a current code."""
        if self.required_for(principal.role):
            raise Conflict(f"MFA is mandatory for the {principal.role} role")

        def attempt(db: Session) -> tuple[CodeCheck, bool | None]:
            user = self._user(db, principal.user_id)
            if not user.mfa_enabled:
                raise Conflict("MFA is not enabled")
            if not self._hasher.verify(user.password_hash, password):
                return CodeCheck.WRONG, None
            check = self._codes.accept(db, user, code, backup=False)
            if check is not CodeCheck.TOTP:
                return check, None
            self._clear(db, user)
            record_event(
                db,
                Event(EventType.MFA_DISABLE, target=user.username),
                context,
                at=self._clock.now(),
            )
            return check, True

        self._guarded(principal.username, context, "disable", attempt)

    def regenerate_backup_codes(
        self, principal: Principal, code: str, context: RequestContext
    ) -> list[str]:
        """A new set of ten codes; the old set stops working."""

        def attempt(db: Session) -> tuple[CodeCheck, list[str] | None]:
            user = self._user(db, principal.user_id)
            if not user.mfa_enabled:
                raise Conflict("MFA is not enabled")
            check = self._codes.accept(db, user, code, backup=False)
            if check is not CodeCheck.TOTP:
                return check, None
            codes = self._codes.new_backup_codes(db, user)
            record_event(
                db,
                Event(EventType.MFA_BACKUP_CODES_REGENERATED, target=user.username),
                context,
                at=self._clock.now(),
            )
            return check, codes

        return self._guarded(principal.username, context, "backup_codes", attempt)

    def _clear(self, db: Session, user: User) -> None:
        user.mfa_enabled = False
        user.mfa_secret = None
        user.mfa_enabled_at = None
        user.mfa_last_step = None
        user.mfa_pending_secret = None
        user.mfa_pending_at = None
        db.execute(delete(BackupCode).where(BackupCode.user_id == user.id))
        self._sessions.forget()

    def reset(self, db: Session, context: RequestContext, user: User) -> int:
        """An admin clears another user's MFA (lost device); that user's sessions end."""
        self._clear(db, user)
        revoked = self._sessions.revoke_user(db, user.id, reason="mfa_reset")
        record_event(
            db,
            Event(EventType.MFA_RESET, target=user.username, details={"sessions_revoked": revoked}),
            context,
            at=self._clock.now(),
        )
        return revoked

    def status(self, db: Session, user_id: int) -> MfaStatus:
        user = self._user(db, user_id)
        remaining = db.execute(
            select(func.count(BackupCode.id)).where(
                BackupCode.user_id == user.id, BackupCode.used_at.is_(None)
            )
        ).scalar_one()
        return MfaStatus(
            enabled=user.mfa_enabled,
            required=self.required_for(user.role),
            enabled_at=user.mfa_enabled_at,
            backup_codes_remaining=int(remaining),
        )
