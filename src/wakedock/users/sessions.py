"""Who may see and end which sessions: one's own, or anyone's with sessions:read/revoke."""

from __future__ import annotations

from sqlalchemy.orm import Session

from wakedock.audit.events import Event, EventType
from wakedock.audit.service import record_event
from wakedock.auth.models import User, UserSession
from wakedock.auth.sessions import Principal, SessionStore
from wakedock.clock import Clock
from wakedock.context import RequestContext
from wakedock.errors import NotFound, PermissionDenied
from wakedock.rbac.permissions import Permission
from wakedock.rbac.roles import has_permission


class SessionAdmin:
    """Listing and revoking live sessions under the sessions permissions.

    Methods run in the caller's transaction.
    """

    def __init__(self, clock: Clock, sessions: SessionStore) -> None:
        self._clock = clock
        self._sessions = sessions

    def live(
        self, db: Session, principal: Principal, *, user_id: int | None, all_users: bool
    ) -> list[UserSession]:
        """One's own live sessions, or (with sessions:read) another user's or everyone's."""
        target: int | None = principal.user_id
        if all_users or (user_id is not None and user_id != principal.user_id):
            if not has_permission(principal.role, Permission.SESSIONS_READ):
                raise PermissionDenied("missing permission sessions:read")
            target = None if all_users else user_id
        return self._sessions.list_live(db, target)

    def revoke(
        self,
        db: Session,
        context: RequestContext,
        principal: Principal,
        session_id: str,
        *,
        own_only: bool = False,
    ) -> None:
        """Revoke one session: one's own, or anyone's with sessions:revoke (audited).

        `own_only`: one's own whatever the role (the Account page lists only those).
        """
        row = db.get(UserSession, session_id)
        mine = row is not None and row.user_id == principal.user_id
        may_revoke_others = not own_only and has_permission(
            principal.role, Permission.SESSIONS_REVOKE
        )
        if row is None or (not mine and not may_revoke_others):
            # Someone else's session looks exactly like a missing one.
            raise NotFound("no such session")
        owner = db.get(User, row.user_id)
        if owner is None:
            raise NotFound("no such user")
        self._sessions.revoke(
            db, session_id, reason="revoked_by_user" if mine else "revoked_by_admin"
        )
        revoked = Event(
            EventType.SESSION_REVOKE, target=owner.username, details={"session": session_id}
        )
        record_event(db, revoked, context, at=self._clock.now())

    def revoke_others(self, db: Session, context: RequestContext, principal: Principal) -> int:
        """Revoke every session of the caller but the one it acts through (audited once, with
        how many ended); returns that number."""
        revoked = self._sessions.revoke_user(
            db, principal.user_id, reason="revoked_by_user", keep=principal.session_id
        )
        event = Event(
            EventType.SESSION_REVOKE,
            target=principal.username,
            details={"scope": "others", "sessions_revoked": revoked},
        )
        record_event(db, event, context, at=self._clock.now())
        return revoked
