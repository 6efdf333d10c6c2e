"""What the users pages' routes share: their paths, who may post their forms, the desk that
makes the changes, and what the page says after one."""

from __future__ import annotations

import re

from fastapi import Depends, Request
from fastapi.responses import Response

from wakedock.auth.forms import BrowserSession, refused_page, require_form_csrf
from wakedock.clock import Clock
from wakedock.console.access import refused
from wakedock.console.user_desk import UserDesk
from wakedock.dashboard.browser import Pages, permitted, signed_in
from wakedock.errors import CsrfFailed
from wakedock.mfa.deps import MfaServiceDep
from wakedock.rbac.dependencies import SensitiveCheckDep
from wakedock.rbac.permissions import Permission, Role
from wakedock.users.deps import UserServiceDep
from wakedock.users.service import USERNAME_PATTERN
from wakedock.web.deps import SessionFactoryDep, context_of
from wakedock.web.provided import provider

USERS_PATH = "/admin/users"
ROLES = [role.value for role in Role]
# What the page says after a change: the redirect names the change and the user, and a name is
# shown only if it is a valid username (nothing else from the query reaches the page).
DONE = {
    "created": "created",
    "role": "has the role chosen",
    "disabled": "is disabled; its sessions were revoked",
    "enabled": "is enabled again",
    "mfa": "has no MFA any more; its sessions were revoked",
    "deleted": "was deleted",
}


_ClockDep = Depends(provider(Clock))


def _desk(
    users: UserServiceDep,
    mfa: MfaServiceDep,
    factory: SessionFactoryDep,
    check: SensitiveCheckDep,
    clock: Clock = _ClockDep,
) -> UserDesk:
    return UserDesk(users, mfa, factory, clock, check)


DeskDep = Depends(_desk)


def user_path(name: str) -> str:
    """The page of one account (usernames are URL-safe: a-z, 0-9, '.', '_', '-')."""
    return f"{USERS_PATH}/{name}"


def notice(done: str, user: str) -> str:
    """What to say after a change, from the redirect's query (nothing it does not know)."""
    if done in DONE and re.fullmatch(USERNAME_PATTERN, user):
        return f"User {user} {DONE[done]}."
    return ""


async def admitted(
    request: Request, pages: Pages, here: str, fields: dict[str, str]
) -> BrowserSession | Response:
    """The session of an admin who may change users, having sent this form from a page of
    this server (CSRF token and origin), or the answer to send instead: the sign-in form,
    the refused-form page, or the 403 page (refusals audited as the API's guard audits)."""
    session = await signed_in(request, pages, here)
    if isinstance(session, Response):
        return session
    try:
        await require_form_csrf(request, pages.csrf, context_of(request), session, fields)
    except CsrfFailed:
        return refused_page()
    for permission in (Permission.CONSOLE_READ, Permission.USERS_READ, Permission.USERS_WRITE):
        if not await permitted(request, pages, session.principal, permission):
            return refused()
    return session
