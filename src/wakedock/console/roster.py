"""What the users page shows: accounts searched and filtered, by pages of 50, each with its
last sign-in; and the matrix of roles and permissions, read from the one role table."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.orm import Session

from wakedock.auth.models import User, UserSession
from wakedock.rbac.permissions import Permission, Role
from wakedock.rbac.roles import ROLE_PERMISSIONS

PAGE_SIZE = 50
# Tri-state filters (disabled, MFA enrolled): any, yes, no.
YES_NO = ("yes", "no")
# The last sign-in filter: within RECENT_DAYS, signed in but not since, never signed in.
RECENT_DAYS = 30
SIGNED_IN = ("recent", "dormant", "never")
_LIKE_ESCAPE = re.compile(r"([\\%_])")


@dataclass(frozen=True)
class Narrowing:
    """The search, filters and page of the list (the page's query string)."""

    search: str = ""
    role: str = ""
    disabled: str = ""
    mfa: str = ""
    page: int = 1
    signed_in: str = ""

    @classmethod
    def of(
        cls, search: str, role: str, disabled: str, mfa: str, page: int, signed_in: str = ""
    ) -> Narrowing:
        """Unknown filter values mean "any" (a hand-edited URL, not an error)."""
        return cls(
            search.strip(),
            role if role in {r.value for r in Role} else "",
            disabled if disabled in YES_NO else "",
            mfa if mfa in YES_NO else "",
            page,
            signed_in if signed_in in SIGNED_IN else "",
        )

    def query(self, page: int | None = None) -> str:
        """This narrowing as a query string (on another page if asked)."""
        values = {
            "q": self.search,
            "role": self.role,
            "disabled": self.disabled,
            "mfa": self.mfa,
            "signed_in": self.signed_in,
            "page": page or self.page,
        }
        return urlencode({k: v for k, v in values.items() if v not in ("", 1)})


@dataclass(frozen=True)
class Account:
    """One row of the list."""

    id: int
    username: str
    email: str | None
    role: str
    disabled: bool
    mfa_enabled: bool
    last_sign_in: datetime | None


@dataclass(frozen=True)
class Roster:
    """A page of accounts and where it stands in all that match."""

    accounts: list[Account]
    matching: int
    total: int
    page: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.matching / PAGE_SIZE))

    @property
    def first(self) -> int:
        return (self.page - 1) * PAGE_SIZE + 1


def _narrowed(
    query: Select[Any], narrow: Narrowing, last_at: ColumnElement[Any], now: datetime
) -> Select[Any]:
    if narrow.search:
        # Bound parameters, LIKE wildcards escaped: a search for "%" finds a literal "%".
        pattern = "%" + _LIKE_ESCAPE.sub(r"\\\1", narrow.search.lower()) + "%"
        query = query.where(
            or_(
                User.username.like(pattern, escape="\\"),
                func.lower(User.email).like(pattern, escape="\\"),
            )
        )
    if narrow.role:
        query = query.where(User.role == narrow.role)
    if narrow.disabled:
        query = query.where(User.disabled.is_(narrow.disabled == "yes"))
    if narrow.mfa:
        query = query.where(User.mfa_enabled.is_(narrow.mfa == "yes"))
    cutoff = now - timedelta(days=RECENT_DAYS)
    if narrow.signed_in == "recent":
        query = query.where(last_at >= cutoff)
    elif narrow.signed_in == "dormant":
        query = query.where(last_at < cutoff)
    elif narrow.signed_in == "never":
        query = query.where(last_at.is_(None))
    return query


def roster(db: Session, narrow: Narrowing, now: datetime) -> Roster:
    """The page of accounts `narrow` asks for, "recent" meaning since `now` - RECENT_DAYS. The
    last sign-in is the newest session opened (sessions are opened by a sign-in only, and kept,
    revoked or not)."""
    last = (
        select(UserSession.user_id, func.max(UserSession.created_at).label("at"))
        .group_by(UserSession.user_id)
        .subquery()
    )
    joined = select(User, last.c.at).outerjoin(last, last.c.user_id == User.id)
    base = _narrowed(joined, narrow, last.c.at, now)
    matching = int(db.execute(select(func.count()).select_from(base.subquery())).scalar_one())
    total = int(db.execute(select(func.count(User.id))).scalar_one())
    page = min(narrow.page, max(1, math.ceil(matching / PAGE_SIZE)))
    rows = db.execute(
        base.order_by(User.username).limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)
    ).all()
    accounts = [
        Account(
            r[0].id, r[0].username, r[0].email, r[0].role, r[0].disabled, r[0].mfa_enabled, r[1]
        )
        for r in rows
    ]
    return Roster(accounts, matching, total, page)


def account(db: Session, user_id: int) -> Account | None:
    """One account as the list shows it, or None."""
    found = db.execute(
        select(User, func.max(UserSession.created_at))
        .outerjoin(UserSession, UserSession.user_id == User.id)
        .where(User.id == user_id)
        .group_by(User.id)
    ).first()
    if found is None:
        return None
    u, at = found
    return Account(u.id, u.username, u.email, u.role, u.disabled, u.mfa_enabled, at)


@dataclass(frozen=True)
class Matrix:
    """Roles (columns) and permissions (rows), each cell whether the role holds it."""

    roles: list[str]
    rows: list[tuple[str, list[bool]]]


def role_matrix() -> Matrix:
    """The matrix of `rbac/roles.py`'s ROLE_PERMISSIONS, never typed in: a permission added
    there appears here."""
    roles = list(ROLE_PERMISSIONS)
    rows = [
        (permission.value, [permission in ROLE_PERMISSIONS[role] for role in roles])
        for permission in Permission
    ]
    return Matrix([role.value for role in roles], rows)
