"""`/admin/sessions`: everyone's live sessions; revoke one, or all of a user's.

Reading needs `sessions:read`, revoking `sessions:revoke` (besides `console:read`), asked of
the API's own guard. A post needs this origin and the session's CSRF token; the change is the
API's `SessionAdmin.revoke`, so the audit event is the API's. Revoking the admin's own current
session (or all of the admin's) signs this browser out and sends it to the sign-in form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session, sessionmaker

from wakedock.auth.dependencies import SESSION_COOKIE
from wakedock.auth.forms import BrowserSession, form_fields, refused_page, require_form_csrf
from wakedock.config.settings import Settings
from wakedock.console.access import CONSOLE_PATH, console_session
from wakedock.console.sessions import (
    SessionsView,
    country_lookup,
    live_sessions,
    revoke_all_of,
    revoke_one,
)
from wakedock.context import RequestContext
from wakedock.dashboard.browser import Pages, PagesDep
from wakedock.db import transaction
from wakedock.errors import CsrfFailed, NotFound
from wakedock.rbac.dependencies import public
from wakedock.rbac.permissions import Permission
from wakedock.users.deps import SessionAdminDep
from wakedock.users.sessions import SessionAdmin
from wakedock.web.deps import SessionFactoryDep, context_of
from wakedock.web.provided import provider
from wakedock.web.templating import render_page

router = APIRouter(tags=["pages"], include_in_schema=False)

SESSIONS_PATH = f"{CONSOLE_PATH}/sessions"
REVOKE_PATH = f"{SESSIONS_PATH}/revoke"
REVOKE_USER_PATH = f"{SESSIONS_PATH}/revoke-user"
# What a redirect after a change says; the query names a key, never the text shown.
NOTICES = {
    "revoked": "The session was revoked: its browser must sign in again.",
    "user-revoked": "Every session of that user was revoked.",
    "none": "That user has no live session.",
    "gone": "That session has already ended.",
}

SettingsDep = Annotated[Settings, Depends(provider(Settings))]


@dataclass(frozen=True)
class _Desk:
    """What the page uses: the dashboard's pages kit, the API's SessionAdmin, the database."""

    pages: Pages
    admin: SessionAdmin
    factory: sessionmaker[Session]
    settings: Settings


async def _desk(
    admin: SessionAdminDep,
    factory: SessionFactoryDep,
    settings: SettingsDep,
    pages: Pages = PagesDep,
) -> _Desk:
    return _Desk(pages, admin, factory, settings)


def _read(d: _Desk, session: BrowserSession, user: str, page: int) -> SessionsView:
    countries = country_lookup(d.settings.alerts.geoip_database)
    with transaction(d.factory) as db:
        return live_sessions(db, d.admin, session.principal, countries, user=user, page=page)


@router.get(SESSIONS_PATH, dependencies=[Depends(public)])
async def sessions_page(
    request: Request,
    user: str = Query(default="", max_length=64),
    page: int = Query(default=1, ge=1, le=100_000),
    done: str = "",
    d: _Desk = Depends(_desk),
) -> Response:
    """The list (a GET changes nothing)."""
    found = await console_session(request, d.pages, SESSIONS_PATH, Permission.SESSIONS_READ)
    if isinstance(found, Response):
        return found
    view = await run_in_threadpool(_read, d, found, user, page)
    return render_page(
        "console_sessions.html",
        title="Sessions",
        section="admin",
        user=found.principal.username,
        console=True,
        csrf_token=found.csrf_token(d.pages.csrf),
        view=view,
        notice=NOTICES.get(done),
    )


async def _poster(
    request: Request, d: _Desk
) -> tuple[BrowserSession, dict[str, str], RequestContext] | Response:
    """The admin allowed to revoke, with the post's fields; or the 403 page (a role that may
    not, or a post without this origin and the CSRF token), or the sign-in form."""
    found = await console_session(
        request, d.pages, SESSIONS_PATH, Permission.SESSIONS_READ, Permission.SESSIONS_REVOKE
    )
    if isinstance(found, Response):
        return found
    fields = await form_fields(request)
    context = context_of(request)
    try:
        await require_form_csrf(request, d.pages.csrf, context, found, fields)
    except CsrfFailed:
        return refused_page()
    return found, fields, context


def _signed_out() -> Response:
    """This browser's own session ended: forget its cookie, on to the sign-in form."""
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


def _back(done: str, user: str = "") -> Response:
    query = f"?done={done}" + (f"&user={quote(user, safe='')}" if user else "")
    return RedirectResponse(f"{SESSIONS_PATH}{query}", status_code=303)


@router.post(REVOKE_PATH, dependencies=[Depends(public)])
async def revoke_session(request: Request, d: _Desk = Depends(_desk)) -> Response:
    """Revoke one session (audited `session_revoke`, as `DELETE /api/v1/auth/sessions/{id}`)."""
    posted = await _poster(request, d)
    if isinstance(posted, Response):
        return posted
    session, fields, context = posted
    sid = fields.get("session", "")

    def revoke() -> None:
        with transaction(d.factory) as db:
            revoke_one(db, d.admin, context, session.principal, sid)

    try:
        await run_in_threadpool(revoke)
    except NotFound:
        return _back("gone", fields.get("user", ""))
    if sid == session.principal.session_id:
        return _signed_out()
    return _back("revoked", fields.get("user", ""))


@router.post(REVOKE_USER_PATH, dependencies=[Depends(public)])
async def revoke_user_sessions(request: Request, d: _Desk = Depends(_desk)) -> Response:
    """Revoke every live session of a user (one `session_revoke` event per session)."""
    posted = await _poster(request, d)
    if isinstance(posted, Response):
        return posted
    session, fields, context = posted
    username = fields.get("username", "").strip().lower()

    def revoke() -> int:
        with transaction(d.factory) as db:
            return revoke_all_of(db, d.admin, context, session.principal, username)

    ended = await run_in_threadpool(revoke)
    if ended and username == session.principal.username:
        return _signed_out()
    return _back("user-revoked" if ended else "none", fields.get("user", ""))
