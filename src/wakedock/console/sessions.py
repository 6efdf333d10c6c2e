"""What the console's Sessions page shows and does: everyone's live sessions, one page of them,
and revoking one or all of a user's, through the API's own `SessionAdmin`.

Listing is `SessionAdmin.live` (the API's `GET /api/v1/auth/sessions?all=true`); revoking is
`SessionAdmin.revoke` (the API's `DELETE /api/v1/auth/sessions/{id}`), once per session for
"all of a user's", so every session ended is the same `session_revoke` event as through the API.
A user agent is read with `ua-parser` (the maintained uap-core rules), a country with the GeoIP
database of `alerts.geoip_database` when one is configured. Everything here blocks (database,
GeoIP file): the routes call it on a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session
from ua_parser import parse

from wakedock.alerts.geoip import GeoIP
from wakedock.auth.models import User
from wakedock.auth.sessions import Principal
from wakedock.context import RequestContext
from wakedock.users.sessions import SessionAdmin

PAGE_SIZE = 50
UNKNOWN = "Unknown"
CountryOf = Callable[[str], "str | None"]


@dataclass(frozen=True)
class SessionLine:
    """One live session as the page lists it."""

    id: str
    username: str
    ip: str
    country: str | None
    browser: str
    system: str
    user_agent: str
    created_at: datetime
    last_seen_at: datetime
    current: bool


@dataclass(frozen=True)
class SessionsView:
    """One page of the live sessions (newest first), under an optional user filter."""

    lines: list[SessionLine]
    total: int
    page: int
    pages: int
    user: str
    user_found: bool
    countries: bool


def _version(*parts: str | None) -> str:
    return ".".join(p for p in parts if p)


@lru_cache(maxsize=4096)
def browser_and_system(user_agent: str) -> tuple[str, str]:
    """(`Chrome 131`, `Linux`) from a User-Agent header; `Unknown` for what uap-core does not
    know. Only ever shown, never a security decision; cached because the same few agents
    repeat on every page."""
    found = parse(user_agent)
    browser = UNKNOWN
    if found.user_agent is not None and found.user_agent.family != "Other":
        agent = found.user_agent
        browser = " ".join(p for p in (agent.family, _version(agent.major, agent.minor)) if p)
    system = UNKNOWN
    if found.os is not None and found.os.family != "Other":
        os = found.os
        system = " ".join(p for p in (os.family, _version(os.major, os.minor)) if p)
    return browser, system


@lru_cache(maxsize=2)
def _geoip(path: Path) -> GeoIP:
    # One reader per configured file for the process' life, as the alert pipeline keeps its own.
    return GeoIP(path)


def country_lookup(database: Path | None) -> CountryOf | None:
    """The country of an address, or None when no GeoIP database is configured."""
    return _geoip(database) if database is not None else None


def live_sessions(
    db: Session,
    admin: SessionAdmin,
    principal: Principal,
    country_of: CountryOf | None,
    *,
    user: str = "",
    page: int = 1,
) -> SessionsView:
    """Page `page` of everyone's live sessions, or of `user`'s (a username) only."""
    user = user.strip().lower()
    user_found = True
    if user:
        owner = db.execute(select(User).where(User.username == user)).scalar_one_or_none()
        user_found = owner is not None
        rows = admin.live(db, principal, user_id=owner.id, all_users=False) if owner else []
    else:
        rows = admin.live(db, principal, user_id=None, all_users=True)
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    page = min(max(page, 1), pages)
    shown = rows[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    ids = {row.user_id for row in shown}
    found = db.execute(select(User.id, User.username).where(User.id.in_(ids)))
    names = {row.id: row.username for row in found}
    lines = []
    for row in shown:
        browser, system = browser_and_system(row.user_agent)
        lines.append(
            SessionLine(
                id=row.id,
                username=names.get(row.user_id, "?"),
                ip=row.ip,
                country=country_of(row.ip) if country_of else None,
                browser=browser,
                system=system,
                user_agent=row.user_agent,
                created_at=row.created_at,
                last_seen_at=row.last_seen_at,
                current=row.id == principal.session_id,
            )
        )
    return SessionsView(lines, len(rows), page, pages, user, user_found, country_of is not None)


def revoke_one(
    db: Session, admin: SessionAdmin, context: RequestContext, principal: Principal, sid: str
) -> None:
    """End one session (NotFound when it has ended already): the API's call and event."""
    admin.revoke(db, context, principal, sid)


def revoke_all_of(
    db: Session,
    admin: SessionAdmin,
    context: RequestContext,
    principal: Principal,
    username: str,
) -> int:
    """End every live session of `username`, each as the API's `DELETE` would (one
    `session_revoke` event per session); returns how many ended (0 for no such user)."""
    owner = db.execute(
        select(User).where(User.username == username.strip().lower())
    ).scalar_one_or_none()
    if owner is None:
        return 0
    rows = admin.live(db, principal, user_id=owner.id, all_users=False)
    for row in rows:
        admin.revoke(db, context, principal, row.id)
    return len(rows)
