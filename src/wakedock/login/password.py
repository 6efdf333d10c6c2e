"""Changing one's own password: wrong guesses of the current one spend the login budget."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.events import Event, EventType, Outcome
from wakedock.audit.service import Auditor
from wakedock.auth.sessions import Principal
from wakedock.context import RequestContext
from wakedock.db import transaction
from wakedock.errors import PermissionDenied
from wakedock.login.service import LOGIN_BY_USER
from wakedock.ratelimit.limiter import AttemptLimiter
from wakedock.users.service import UserService


class PasswordChanger:
    """A signed-in user changes its password; every other session of the user ends."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        limiter: AttemptLimiter,
        users: UserService,
        auditor: Auditor,
    ) -> None:
        self._factory = factory
        self._limiter = limiter
        self._users = users
        self._auditor = auditor

    def change(self, principal: Principal, current: str, new: str, context: RequestContext) -> None:
        """Check the current password under the login budget, then set the new one."""
        name = principal.username
        limited = Event(
            EventType.RATE_LIMIT_HIT,
            Outcome.DENIED,
            target=name,
            details={"scope": "password_change"},
        )
        with self._limiter.serialised(f"user:{name}"):
            self._limiter.check_all(
                [(LOGIN_BY_USER, name)],
                on_limited=lambda: self._auditor.record(limited, context),
            )
            try:
                with transaction(self._factory) as db:
                    user = self._users.get(db, principal.user_id)
                    self._users.change_own_password(
                        db, context, user, current, new, principal.session_id
                    )
            except PermissionDenied:
                self._limiter.record_failure(LOGIN_BY_USER, name)
                wrong = Event(
                    EventType.PASSWORD_CHANGE,
                    Outcome.FAILURE,
                    target=name,
                    details={"reason": "wrong current password"},
                )
                self._auditor.record(wrong, context)
                raise
