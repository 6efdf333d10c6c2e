"""The Account page (`/account`) and its forms: my sessions, my second factor, my password.

A signed-in browser (the session cookie) only; nothing changes on a GET (S3.5), and every post
needs this server's origin and the session's CSRF token, as the MFA enrolment pages do. Each
change is one call to the service the API uses, so the audit events, the rate limits and the
rules are the API's: `SessionAdmin` (sessions), `MfaService` (codes: replay-proof and under the
MFA budget), `PasswordChanger` (a wrong current password spends the login budget; the other
sessions end). A change that worked redirects to the page with a notice (post, redirect, get);
one that did not shows the page again with the problem next to its field.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session, sessionmaker

from wakedock.account.page import (
    ACCOUNT_PATH,
    CODE_REJECTED,
    TOO_MANY,
    Problems,
    account_page,
    backup_codes_page,
    done_path,
)
from wakedock.account.service import Overview, overview
from wakedock.audit.deps import SessionFactoryDep
from wakedock.audit.events import Event, EventType, Outcome
from wakedock.auth.csrf import CsrfGuard
from wakedock.auth.dependencies import SESSION_COOKIE
from wakedock.auth.deps import CsrfGuardDep, SessionStoreDep
from wakedock.auth.forms import (
    BrowserSession,
    browser_session,
    enrolment_path,
    form_fields,
    refused_page,
    require_form_csrf,
    sign_in_first,
)
from wakedock.auth.hashing import run_hashing
from wakedock.auth.sessions import Principal, SessionStore
from wakedock.context import RequestContext
from wakedock.db import transaction
from wakedock.errors import Conflict, CsrfFailed, NotFound, PermissionDenied, TooManyAttempts
from wakedock.login.deps import PasswordChangerDep
from wakedock.login.password import PasswordChanger
from wakedock.mfa.deps import MfaServiceDep
from wakedock.mfa.errors import MfaCodeRejected
from wakedock.mfa.service import MfaService
from wakedock.rbac.dependencies import GuardContext, GuardContextDep, public
from wakedock.rbac.permissions import Permission
from wakedock.rbac.roles import has_permission
from wakedock.users.deps import SessionAdminDep
from wakedock.users.service import PasswordRejected
from wakedock.users.sessions import SessionAdmin
from wakedock.web.deps import context_of
from wakedock.web.templating import message_page

router = APIRouter(tags=["pages"], include_in_schema=False)

SESSIONS_PATH = f"{ACCOUNT_PATH}/sessions"
MFA_PATH = f"{ACCOUNT_PATH}/mfa"


@dataclass(frozen=True)
class _Desk:
    """What the Account page uses: the services of the API, the CSRF guard, the guard rules."""

    sessions: SessionStore
    csrf: CsrfGuard
    admin: SessionAdmin
    mfa: MfaService
    passwords: PasswordChanger
    factory: sessionmaker[Session]
    guard: GuardContext


async def _desk(
    sessions: SessionStoreDep,
    csrf: CsrfGuardDep,
    admin: SessionAdminDep,
    mfa: MfaServiceDep,
    passwords: PasswordChangerDep,
    factory: SessionFactoryDep,
    guard: GuardContextDep,
) -> _Desk:
    return _Desk(sessions, csrf, admin, mfa, passwords, factory, guard)


@dataclass(frozen=True)
class _Caller:
    session: BrowserSession
    fields: dict[str, str]
    context: RequestContext  # names the signed-in user, for the audit trail

    @property
    def principal(self) -> Principal:
        return self.session.principal


async def _caller(
    request: Request, d: _Desk, permission: Permission, fields: dict[str, str] | None = None
) -> _Caller | Response:
    """The signed-in caller allowed `permission`, or the answer: sign in first, refused (a post
    without this origin or the CSRF token: `fields` is a post's form), enrol MFA first (as the
    API's guards demand of a role that must use it), or not allowed."""
    session = await browser_session(request, d.sessions)
    if session is None:
        return sign_in_first(ACCOUNT_PATH)
    context = context_of(request)
    if fields is not None:
        try:
            await require_form_csrf(request, d.csrf, context, session, fields)
        except CsrfFailed:
            return refused_page()
    principal = session.principal
    if d.guard.enrolment.enrolment_pending(principal):
        return RedirectResponse(enrolment_path(ACCOUNT_PATH), status_code=303)
    if not has_permission(principal.role, permission):
        denied = Event(
            EventType.FORBIDDEN_ACCESS,
            Outcome.DENIED,
            target=request.url.path,
            details={"method": request.method, "permission": permission.value},
        )
        await run_in_threadpool(d.guard.auditor.record, denied, context)
        return message_page("Not allowed", "Your role may not change this account.", 403)
    return _Caller(session, fields or {}, context)


async def _posted(request: Request, d: _Desk) -> _Caller | Response:
    return await _caller(request, d, Permission.ACCOUNT_WRITE, await form_fields(request))


def _read(d: _Desk, principal: Principal) -> Overview:
    with transaction(d.factory) as db:
        return overview(db, d.admin, d.mfa, principal)


async def _page(
    d: _Desk,
    caller: _Caller,
    *,
    notice: str | None = None,
    problems: Problems | None = None,
    status: int = 200,
    retry_after: int | None = None,
) -> Response:
    found = await run_in_threadpool(_read, d, caller.principal)
    csrf = caller.session.csrf_token(d.csrf)
    page = account_page(found, csrf, notice=notice, problems=problems, status=status)
    if retry_after is not None:
        page.headers["Retry-After"] = str(retry_after)
    return page


def _done(notice: str) -> Response:
    return RedirectResponse(done_path(notice), status_code=303)


@router.get(ACCOUNT_PATH, dependencies=[Depends(public)])
async def account(request: Request, done: str = "", d: _Desk = Depends(_desk)) -> Response:
    """The page: sessions, two-step verification, password (a GET changes nothing)."""
    caller = await _caller(request, d, Permission.ACCOUNT_READ)
    if isinstance(caller, Response):
        return caller
    return await _page(d, caller, notice=done)


# -- sessions ------------------------------------------------------------------------------
def _revoke_one(d: _Desk, caller: _Caller, session_id: str) -> None:
    with transaction(d.factory) as db:
        # Only one's own from this page, whatever the role: it lists only those.
        d.admin.revoke(db, caller.context, caller.principal, session_id, own_only=True)


def _revoke_others(d: _Desk, caller: _Caller) -> int:
    with transaction(d.factory) as db:
        return d.admin.revoke_others(db, caller.context, caller.principal)


@router.post(f"{SESSIONS_PATH}/revoke", dependencies=[Depends(public)])
async def revoke_session(request: Request, d: _Desk = Depends(_desk)) -> Response:
    """Sign out one of my sessions (audited `session_revoke`); this one signs me out."""
    caller = await _posted(request, d)
    if isinstance(caller, Response):
        return caller
    session_id = caller.fields.get("session", "")
    try:
        await run_in_threadpool(_revoke_one, d, caller, session_id)
    except NotFound:
        # Someone else's session reads exactly like one that has ended.
        gone = {"sessions": ["That session has already ended."]}
        return await _page(d, caller, problems=gone, status=404)
    if session_id == caller.principal.session_id:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(
            SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict"
        )
        return response
    return _done("session-revoked")


@router.post(f"{SESSIONS_PATH}/revoke-others", dependencies=[Depends(public)])
async def revoke_other_sessions(request: Request, d: _Desk = Depends(_desk)) -> Response:
    """Sign out every session of mine but this one (one `session_revoke` event)."""
    caller = await _posted(request, d)
    if isinstance(caller, Response):
        return caller
    await run_in_threadpool(_revoke_others, d, caller)
    return _done("others-revoked")


# -- password ------------------------------------------------------------------------------
@router.post(f"{ACCOUNT_PATH}/password", dependencies=[Depends(public)])
async def change_password(request: Request, d: _Desk = Depends(_desk)) -> Response:
    """Current password and a new one: the policy's reasons, all of them, next to the field."""
    caller = await _posted(request, d)
    if isinstance(caller, Response):
        return caller
    current = caller.fields.get("current_password", "")
    new = caller.fields.get("new_password", "")
    problems: dict[str, list[str]] = {}
    if not current:
        problems["current_password"] = ["Enter your current password."]
    if not new:
        problems["new_password"] = ["Enter a new password."]
    if problems:
        return await _page(d, caller, problems=problems, status=400)
    try:
        # Verifying and hashing with argon2: on the hashing threads, as sign-in does.
        await run_hashing(
            request, d.passwords.change, caller.principal, current, new, caller.context
        )
    except PasswordRejected as exc:
        reasons = [f"Password {reason}." for reason in exc.extra.get("reasons", [exc.detail])]
        return await _page(d, caller, problems={"new_password": reasons}, status=400)
    except PermissionDenied:
        wrong = {"current_password": ["That is not your current password."]}
        return await _page(d, caller, problems=wrong, status=400)
    except TooManyAttempts as exc:
        limited = {"password": [TOO_MANY]}
        return await _page(d, caller, problems=limited, status=429, retry_after=exc.retry_after)
    return _done("password-changed")


# -- two-step verification -----------------------------------------------------------------
@router.post(f"{MFA_PATH}/backup-codes", dependencies=[Depends(public)])
async def regenerate_backup_codes(request: Request, d: _Desk = Depends(_desk)) -> Response:
    """A fresh code from the app (never one already used) buys ten new backup codes, shown
    this once; the old ones stop working."""
    caller = await _posted(request, d)
    if isinstance(caller, Response):
        return caller
    code = caller.fields.get("code", "").strip()
    if not code:
        missing = {"backup_code": ["Enter the code your app shows now."]}
        return await _page(d, caller, problems=missing, status=400)
    try:
        # Ten new codes are hashed with argon2: on the hashing threads.
        codes = await run_hashing(
            request, d.mfa.regenerate_backup_codes, caller.principal, code, caller.context
        )
    except MfaCodeRejected:
        return await _page(d, caller, problems={"backup_code": [CODE_REJECTED]}, status=400)
    except TooManyAttempts as exc:
        limited = {"backup": [TOO_MANY]}
        return await _page(d, caller, problems=limited, status=429, retry_after=exc.retry_after)
    except Conflict:
        off = {"backup": ["Two-step verification is not on: set it up first."]}
        return await _page(d, caller, problems=off, status=409)
    csrf = caller.session.csrf_token(d.csrf)
    return backup_codes_page(codes, caller.principal.username, csrf)


@router.post(f"{MFA_PATH}/disable", dependencies=[Depends(public)])
async def disable_mfa(request: Request, d: _Desk = Depends(_desk)) -> Response:
    """Turn two-step verification off: the password and a fresh code from the app (the API's
    rule); refused for a role that must use it."""
    caller = await _posted(request, d)
    if isinstance(caller, Response):
        return caller
    password = caller.fields.get("password", "")
    code = caller.fields.get("code", "").strip()
    problems: dict[str, list[str]] = {}
    if not password:
        problems["disable_password"] = ["Enter your password."]
    if not code:
        problems["disable_code"] = ["Enter the code your app shows now."]
    if problems:
        return await _page(d, caller, problems=problems, status=400)
    try:
        await run_hashing(request, d.mfa.disable, caller.principal, password, code, caller.context)
    except MfaCodeRejected:
        # The MFA service does not say which of the two was wrong, and neither does the page.
        message = "The password or the code was not accepted (each code works once). Try again."
        return await _page(d, caller, problems={"disable": [message]}, status=400)
    except TooManyAttempts as exc:
        limited = {"disable": [TOO_MANY]}
        return await _page(d, caller, problems=limited, status=429, retry_after=exc.retry_after)
    except Conflict:
        if d.mfa.required_for(caller.principal.role):
            message = "Your role must use two-step verification: it cannot be turned off."
        else:
            message = "Two-step verification is already off."
        return await _page(d, caller, problems={"disable": [message]}, status=409)
    return _done("mfa-disabled")
