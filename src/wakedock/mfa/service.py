"""MFA rules: enrolment, code checks (replay-proof, rate limited), step-up, resets.

MFA answers "is this code valid for this user" under its own failure budgets; the login flow
(login/service.py) asks it that, and opens the session itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.events import Event, EventType, Outcome
from wakedock.audit.service import Auditor, record_event
from wakedock.auth.models import User
from wakedock.auth.passwords import PasswordHasher
from wakedock.auth.sessions import Principal, SessionStore
from wakedock.clock import Clock
from wakedock.config import MfaSettings
from wakedock.context import RequestContext
from wakedock.db import transaction
from wakedock.errors import Conflict, DependencyUnavailable, NotAuthenticated, NotFound
from wakedock.mfa import totp
from wakedock.mfa.codes import CodeBook, CodeCheck, seal_context
from wakedock.mfa.crypto import SecretBox
from wakedock.mfa.errors import MfaCodeRejected, MfaLoginRejected, StepUpRequired
from wakedock.mfa.models import BackupCode
from wakedock.ratelimit.limiter import STORE_DOWN, AttemptLimiter
from wakedock.rbac.errors import EnrolmentRequired

log = logging.getLogger("wakedock.mfa")

MFA_BY_USER = "mfa:user"
MFA_BY_IP = "mfa:ip"


def mfa_budgets(mfa: MfaSettings) -> dict[str, str]:
    """The code-check budgets, per user and per client address, for the limiter."""
    return {MFA_BY_USER: mfa.attempts_per_user, MFA_BY_IP: mfa.attempts_per_ip}


# The outcomes of a code check that accept the code: a fresh TOTP code or an unused backup code.
VALID_CODES = (CodeCheck.TOTP, CodeCheck.BACKUP)
# An unconfirmed enrolment secret is forgotten after this long.
_PENDING_FOR = timedelta(minutes=15)
T = TypeVar("T")


@dataclass(frozen=True)
class Enrolment:
    secret: str
    otpauth_uri: str
    qr_png_base64: str


@dataclass(frozen=True)
class StepUp:
    """A fresh MFA proof: when, and for how long sensitive actions accept it."""

    at: datetime
    valid_for_seconds: int


@dataclass(frozen=True)
class MfaStatus:
    enabled: bool
    required: bool
    enabled_at: datetime | None
    backup_codes_remaining: int


def live_user(db: Session, user_id: int) -> User:
    """The enabled account of `user_id`, or NotAuthenticated (it was deleted or disabled)."""
    user = db.get(User, user_id)
    if user is None or user.disabled:
        raise NotAuthenticated("Session expired or revoked")
    return user


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
        auditor: Auditor,
        settings: MfaSettings,
    ) -> None:
        self._factory = factory
        self._clock = clock
        self._box = box
        self._hasher = hasher
        self._codes = CodeBook(clock, box, hasher)
        self._limiter = limiter
        self._sessions = sessions
        self._auditor = auditor
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
        self._auditor.record(refused, context)
        raise StepUpRequired("this action needs a recent MFA proof: POST /api/v1/auth/mfa/step-up")

    # -- the guarded check ----------------------------------------------------------------
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
                    on_limited=lambda: self._auditor.record(limited, context),
                )
            except DependencyUnavailable:  # refused, fail closed: still in the audit trail
                details = {"purpose": purpose, "reason": STORE_DOWN}
                self._auditor.record(
                    Event(EventType.MFA_FAILURE, Outcome.DENIED, name, details=details), context
                )
                raise
            yield

    def guarded(
        self,
        name: str,
        context: RequestContext,
        purpose: str,
        attempt: Callable[[Session], tuple[CodeCheck, T | None]],
        *,
        login: bool = False,
    ) -> T:
        """Run `attempt` (in a transaction) under the MFA failure budgets; count, audit and
        refuse (`MfaLoginRejected` if `login`, else `MfaCodeRejected`) failures.

        `attempt` answers how the code checked and, if it was accepted, its result.
        """
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
                self._auditor.record(failed, context)
                error = MfaLoginRejected if login else MfaCodeRejected
                raise error("invalid or already used code")
        return result

    # -- enrolment ------------------------------------------------------------------------
    def begin_enrolment(self, principal: Principal, context: RequestContext) -> Enrolment:
        """A fresh secret, its otpauth URI and QR code. Nothing is active until confirmed."""
        secret = totp.new_secret()
        with transaction(self._factory) as db:
            user = live_user(db, principal.user_id)
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
            user = live_user(db, principal.user_id)
            now = self._clock.now()
            if user.mfa_enabled:
                raise Conflict("MFA is already enabled")
            if (
                user.mfa_pending_secret is None
                or user.mfa_pending_at is None
                or (now - user.mfa_pending_at > _PENDING_FOR)
            ):
                self._auditor.record(
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

        return self.guarded(principal.username, context, "enrolment", attempt)

    # -- login ----------------------------------------------------------------------------
    def accept_code(self, db: Session, user: User, code: str) -> CodeCheck:
        """Whether `code` (TOTP or backup code) is valid for `user` now; a valid one is spent.

        Runs in the caller's transaction (inside `guarded`), so that spending the code and
        what it unlocks commit together.
        """
        return self._codes.accept(db, user, code)

    # -- management -----------------------------------------------------------------------
    def step_up(self, principal: Principal, code: str, context: RequestContext) -> StepUp:
        """Prove MFA again in this session (for sensitive actions): the proof and its validity."""

        def attempt(db: Session) -> tuple[CodeCheck, StepUp | None]:
            user = live_user(db, principal.user_id)
            if not user.mfa_enabled:
                raise EnrolmentRequired("enrol MFA first: POST /api/v1/auth/mfa/setup")
            check = self._codes.accept(db, user, code)
            if check not in VALID_CODES:
                return check, None
            now = self._clock.now()
            self._sessions.mark_mfa(db, principal.session_id, now)
            event = Event(
                EventType.MFA_STEP_UP, target=user.username, details={"method": check.value}
            )
            record_event(db, event, context, at=now)
            return check, StepUp(now, self._settings.step_up_seconds)

        return self.guarded(principal.username, context, "step_up", attempt)

    def disable(
        self, principal: Principal, password: str, code: str, context: RequestContext
    ) -> None:
        """Turn MFA off for oneself: needs the password and a current code."""
        if self.required_for(principal.role):
            raise Conflict(f"MFA is mandatory for the {principal.role} role")

        def attempt(db: Session) -> tuple[CodeCheck, bool | None]:
            user = live_user(db, principal.user_id)
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

        self.guarded(principal.username, context, "disable", attempt)

    def regenerate_backup_codes(
        self, principal: Principal, code: str, context: RequestContext
    ) -> list[str]:
        """A new set of ten codes; the old set stops working."""

        def attempt(db: Session) -> tuple[CodeCheck, list[str] | None]:
            user = live_user(db, principal.user_id)
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

        return self.guarded(principal.username, context, "backup_codes", attempt)

    def _clear(self, db: Session, user: User) -> None:
        user.mfa_enabled = False
        user.mfa_secret = None
        user.mfa_enabled_at = None
        user.mfa_last_step = None
        user.mfa_pending_secret = None
        user.mfa_pending_at = None
        db.execute(delete(BackupCode).where(BackupCode.user_id == user.id))
        self._sessions.forget(db)

    def reset(self, db: Session, context: RequestContext, user_id: int) -> int:
        """An admin clears another user's MFA (lost device); that user's sessions end."""
        user = db.get(User, user_id)
        if user is None:
            raise NotFound("no such user")
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
        user = live_user(db, user_id)
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

    def enabled(self, user_id: int) -> bool:
        """Whether the account has MFA on now (read in a transaction of its own)."""
        with self._factory() as db:
            return self.status(db, user_id).enabled
