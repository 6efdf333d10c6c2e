"""Opening accounts without an admin: the first admin (with the one-time setup token) and
self-registration (off by default, always the least-privileged role)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.events import Event, EventType, Outcome
from wakedock.audit.service import Auditor, record_event
from wakedock.auth.models import User
from wakedock.auth.setup_token import SetupToken
from wakedock.clock import Clock
from wakedock.context import RequestContext
from wakedock.rbac.permissions import Role
from wakedock.rbac.roles import SELF_REGISTRATION_ROLE
from wakedock.users.errors import RegistrationDisabled, SetupUnavailable
from wakedock.users.service import UserService


def _user_count(db: Session) -> int:
    return int(db.execute(select(func.count(User.id))).scalar_one())


class Signup:
    """The two ways in that need no admin. Methods with `db` run in the caller's transaction."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        clock: Clock,
        users: UserService,
        setup: SetupToken,
        auditor: Auditor,
        *,
        registration_enabled: bool,
    ) -> None:
        self._factory = factory
        self._clock = clock
        self._users = users
        self._setup = setup
        self._auditor = auditor
        self._registration_enabled = registration_enabled

    def open_setup(self) -> tuple[str, datetime] | None:
        """With no account yet: a new one-time setup token and its expiry; else None."""
        with self._factory() as db:
            if _user_count(db) != 0:
                return None
        return self._setup.issue()

    def first_admin(
        self,
        db: Session,
        context: RequestContext,
        *,
        token: str,
        username: str,
        password: str,
        email: str | None,
    ) -> User:
        """Create the first admin with the setup token; SetupUnavailable (audited) otherwise.

        A refused password leaves the token usable; it is spent only when the admin is created.
        """
        if _user_count(db) == 0 and self._setup.matches(token):
            self._users.check_password(password, username.lower(), email)
            if self._setup.consume(token):
                user = self._users.create(
                    db, context, username=username, password=password, email=email, role=Role.ADMIN
                )
                done = Event(EventType.SETUP_COMPLETE, target=user.username)
                record_event(db, done, context, at=self._clock.now())
                return user
        refused = Event(
            EventType.SETUP_COMPLETE,
            Outcome.DENIED,
            details={"reason": "invalid, expired or already used"},
        )
        self._auditor.record(refused, context)
        raise SetupUnavailable("setup token invalid, expired or already used")

    def register(
        self,
        db: Session,
        context: RequestContext,
        *,
        username: str,
        password: str,
        email: str | None,
    ) -> User:
        """Self-registration, when enabled: always the least-privileged role."""
        if not self._registration_enabled:
            raise RegistrationDisabled("self-registration is disabled")
        return self._users.create(
            db,
            context,
            username=username,
            password=password,
            email=email,
            role=SELF_REGISTRATION_ROLE,
            event=EventType.REGISTRATION,
        )
