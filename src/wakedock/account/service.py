"""What the Account page shows: the caller's live sessions (this one first) and MFA status.

Read through the same services as the API (`SessionAdmin.live`, `MfaService.status`), in one
transaction; the changes go through those services too (see router.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from wakedock.account.devices import describe_device
from wakedock.auth.sessions import Principal
from wakedock.mfa.service import MfaService, MfaStatus
from wakedock.users.sessions import SessionAdmin


@dataclass(frozen=True)
class SessionLine:
    """One live session as the page lists it."""

    id: str
    device: str
    user_agent: str
    ip: str
    created_at: datetime
    last_seen_at: datetime
    current: bool


@dataclass(frozen=True)
class Overview:
    """Everything the Account page shows about the signed-in user."""

    username: str
    role: str
    sessions: list[SessionLine]
    mfa: MfaStatus
    # Roles that must use MFA cannot turn it off (MfaService.disable refuses): no such form.
    may_disable_mfa: bool


def overview(db: Session, admin: SessionAdmin, mfa: MfaService, principal: Principal) -> Overview:
    """The caller's live sessions (the current one first, then newest first) and MFA status."""
    rows = admin.live(db, principal, user_id=None, all_users=False)
    lines = [
        SessionLine(
            id=row.id,
            device=describe_device(row.user_agent),
            user_agent=row.user_agent,
            ip=row.ip,
            created_at=row.created_at,
            last_seen_at=row.last_seen_at,
            current=row.id == principal.session_id,
        )
        for row in rows
    ]
    lines.sort(key=lambda line: not line.current)  # stable: the rest stay newest first
    status = mfa.status(db, principal.user_id)
    return Overview(
        username=principal.username,
        role=principal.role,
        sessions=lines,
        mfa=status,
        may_disable_mfa=status.enabled and not status.required,
    )
