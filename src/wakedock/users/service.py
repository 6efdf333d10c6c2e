"""User accounts: creation under the password policy, search, updates, disabling, deletion."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from wakedock.audit.events import Event, EventType
from wakedock.audit.service import record_event
from wakedock.auth.models import User
from wakedock.auth.passwords import PasswordHasher
from wakedock.auth.policy import describe, password_problems
from wakedock.auth.sessions import SessionStore
from wakedock.clock import Clock
from wakedock.context import RequestContext
from wakedock.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from wakedock.rbac.permissions import Role

USERNAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{1,63}$"
# What clients may send: any case, stored lower-case (usernames are case-insensitive).
USERNAME_INPUT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$"
_LIKE_ESCAPE = re.compile(r"([\\%_])")


class PasswordRejected(InvalidInput):
    code = "password_rejected"


@dataclass(frozen=True)
class PasswordRules:
    min_length: int
    min_score: int


class UserService:
    """Rules for user accounts. Methods run inside the caller's transaction."""

    def __init__(
        self, clock: Clock, hasher: PasswordHasher, rules: PasswordRules, sessions: SessionStore
    ) -> None:
        self._clock = clock
        self._hasher = hasher
        self._rules = rules
        self._sessions = sessions

    def check_password(self, password: str, username: str | None, email: str | None) -> None:
        """Raise PasswordRejected (400) listing every reason the password is refused."""
        problems = password_problems(
            password,
            min_length=self._rules.min_length,
            min_score=self._rules.min_score,
            username=username,
            email=email,
        )
        if problems:
            raise PasswordRejected(describe(problems), extra={"reasons": problems})

    def create(
        self,
        db: Session,
        context: RequestContext,
        *,
        username: str,
        password: str,
        role: Role,
        email: str | None = None,
        event: EventType = EventType.USER_CREATE,
    ) -> User:
        """Create an account; the password must pass the policy."""
        username = username.strip().lower()
        if not re.match(USERNAME_PATTERN, username):
            raise InvalidInput("username must be 2-64 characters: a-z, 0-9, '.', '_', '-'")
        self.check_password(password, username, email)
        now = self._clock.now()
        user = User(
            username=username,
            email=email,
            role=role.value,
            password_hash=self._hasher.hash(password),
            disabled=False,
            created_at=now,
            updated_at=now,
            password_changed_at=now,
        )
        try:
            with db.begin_nested():
                db.add(user)
                db.flush()
        except IntegrityError:
            raise Conflict("a user with this username or email already exists") from None
        record_event(
            db, Event(event, target=username, details={"role": role.value}), context, at=now
        )
        if role is Role.ADMIN:
            self._escalated(db, username, None, context)
        return user

    def _escalated(
        self, db: Session, username: str, previous: str | None, context: RequestContext
    ) -> None:
        """Someone now holds every permission: its own critical event (alerted)."""
        details = {"to": Role.ADMIN.value, "from": previous or "none"}
        escalation = Event(EventType.PRIVILEGE_ESCALATION, target=username, details=details)
        record_event(db, escalation, context, at=self._clock.now())

    def get(self, db: Session, user_id: int) -> User:
        user = db.get(User, user_id)
        if user is None:
            raise NotFound("no such user")
        return user

    def by_username(self, db: Session, username: str) -> User:
        user = db.execute(
            select(User).where(User.username == username.strip().lower())
        ).scalar_one_or_none()
        if user is None:
            raise NotFound(f"no user named {username.strip().lower()!r}")
        return user

    def search(self, db: Session, term: str | None, limit: int, offset: int) -> list[User]:
        """Users whose username or email contains `term` (bound parameters, LIKE-escaped)."""
        query = select(User)
        if term:
            pattern = "%" + _LIKE_ESCAPE.sub(r"\\\1", term.lower()) + "%"
            query = query.where(
                or_(
                    User.username.like(pattern, escape="\\"),
                    func.lower(User.email).like(pattern, escape="\\"),
                )
            )
        return list(db.execute(query.order_by(User.id).limit(limit).offset(offset)).scalars())

    def _enabled_admins(self, db: Session) -> int:
        return int(
            db.execute(
                select(func.count(User.id)).where(
                    User.role == Role.ADMIN.value, User.disabled.is_(False)
                )
            ).scalar_one()
        )

    def _guard_last_admin(self, db: Session, user: User) -> None:
        if user.role == Role.ADMIN.value and not user.disabled and self._enabled_admins(db) <= 1:
            raise Conflict("this is the last enabled admin: create another admin first")

    def update(
        self,
        db: Session,
        context: RequestContext,
        user: User,
        *,
        role: Role | None = None,
        email: str | None = None,
        disabled: bool | None = None,
        password: str | None = None,
    ) -> User:
        """Change role, email, enabled state or password; each change is audited.

        An e-mail already in use is a Conflict (409) whatever else the call changes.
        """
        now = self._clock.now()
        if email is not None and email != user.email:
            user.email = email
            # Checked first, on its own: any later query (role guard, session revocation) would
            # flush the duplicate e-mail as a bare IntegrityError outside this handler.
            try:
                db.flush()
            except IntegrityError:
                raise Conflict("a user with this email already exists") from None
            record_event(
                db,
                Event(EventType.USER_UPDATE, target=user.username, details={"field": "email"}),
                context,
                at=now,
            )
        if role is not None and role.value != user.role:
            if user.role == Role.ADMIN.value:
                self._guard_last_admin(db, user)
            record_event(
                db,
                Event(
                    EventType.ROLE_CHANGE,
                    target=user.username,
                    details={"from": user.role, "to": role.value},
                ),
                context,
                at=now,
            )
            if role is Role.ADMIN:
                self._escalated(db, user.username, user.role, context)
            user.role = role.value
            self._sessions.forget(db)
        if disabled is not None and disabled != user.disabled:
            if disabled:
                self._guard_last_admin(db, user)
                revoked = self._sessions.revoke_user(db, user.id, reason="user_disabled")
                record_event(
                    db,
                    Event(
                        EventType.USER_DISABLE,
                        target=user.username,
                        details={"sessions_revoked": revoked},
                    ),
                    context,
                    at=now,
                )
            else:
                record_event(
                    db,
                    Event(
                        EventType.USER_UPDATE,
                        target=user.username,
                        details={"field": "disabled", "to": False},
                    ),
                    context,
                    at=now,
                )
            user.disabled = disabled
        if password is not None:
            self.set_password(db, context, user, password, keep_session=None)
        user.updated_at = now
        # Validated sessions carry the user's profile: let them pick up the change.
        self._sessions.forget(db)
        db.flush()
        return user

    def set_password(
        self,
        db: Session,
        context: RequestContext,
        user: User,
        password: str,
        *,
        keep_session: str | None,
    ) -> int:
        """Set a new password and revoke the user's other sessions; returns how many."""
        self.check_password(password, user.username, user.email)
        now = self._clock.now()
        user.password_hash = self._hasher.hash(password)
        user.password_changed_at = now
        user.updated_at = now
        revoked = self._sessions.revoke_user(
            db, user.id, reason="password_change", keep=keep_session
        )
        record_event(
            db,
            Event(
                EventType.PASSWORD_CHANGE,
                target=user.username,
                details={"sessions_revoked": revoked},
            ),
            context,
            at=now,
        )
        return revoked

    def change_own_password(
        self,
        db: Session,
        context: RequestContext,
        user: User,
        current: str,
        new: str,
        session_id: str,
    ) -> int:
        """The holder of a session changes its password: the current one must be right."""
        if not self._hasher.verify(user.password_hash, current):
            raise PermissionDenied("current password is wrong")
        return self.set_password(db, context, user, new, keep_session=session_id)

    def delete(self, db: Session, context: RequestContext, user: User, *, actor_id: int) -> None:
        if user.id == actor_id:
            raise Conflict("you cannot delete your own account")
        self._guard_last_admin(db, user)
        self._sessions.revoke_user(db, user.id, reason="user_deleted")
        record_event(
            db, Event(EventType.USER_DELETE, target=user.username), context, at=self._clock.now()
        )
        db.delete(user)
