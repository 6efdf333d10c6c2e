"""MFA adoption figures, for the seed's KPI (100% of admins, more than 80% of users)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from wakedock.auth.models import User
from wakedock.rbac.permissions import Role


@dataclass
class RoleFigures:
    users: int = 0
    enrolled: int = 0

    @property
    def percent(self) -> float:
        return round(100.0 * self.enrolled / self.users, 1) if self.users else 0.0


def adoption_by_role(db: Session) -> dict[str, RoleFigures]:
    """Enabled accounts, and how many of them have MFA, for every role."""
    figures = {role.value: RoleFigures() for role in Role}
    rows = db.execute(
        select(User.role, User.mfa_enabled, func.count(User.id))
        .where(User.disabled.is_(False))
        .group_by(User.role, User.mfa_enabled)
    ).all()
    for role, enabled, count in rows:
        entry = figures.setdefault(role, RoleFigures())
        entry.users += int(count)
        if enabled:
            entry.enrolled += int(count)
    return figures
