"""The MFA enrolment pages: a browser user whose role must use MFA (or who wants it) enrols here.

`GET /mfa/enrol` says why and offers to start; `POST /mfa/enrol` creates the pending secret and
shows it (QR code and key); `POST /mfa/enrol/confirm` activates it with a first code and shows
the ten backup codes once, with a link on to `next`. Nothing changes on a GET (S3.5), and every
post needs this server's origin and the session's CSRF token. The rules (pending secret, rate
limits, audit) are the MFA service's, exactly as for the API.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from wakedock.auth.csrf import CsrfGuard
from wakedock.auth.deps import CsrfGuardDep, SessionStoreDep
from wakedock.auth.forms import (
    ENROL_PATH,
    BrowserSession,
    browser_session,
    enrolment_path,
    form_fields,
    refused_page,
    require_form_csrf,
    sign_in_first,
)
from wakedock.auth.hashing import run_hashing
from wakedock.auth.sessions import SessionStore
from wakedock.context import RequestContext
from wakedock.errors import Conflict, CsrfFailed, TooManyAttempts
from wakedock.mfa.deps import MfaServiceDep
from wakedock.mfa.errors import MfaCodeRejected
from wakedock.mfa.service import Enrolment, MfaService
from wakedock.rbac.dependencies import public
from wakedock.web.deps import context_of
from wakedock.web.redirects import local_path
from wakedock.web.templating import message_page, render_page

router = APIRouter(tags=["pages"], include_in_schema=False)

_TITLE = "Set up two-step verification"


@dataclass(frozen=True)
class _Pages:
    """What the enrolment pages use: the MFA rules, the sessions and the CSRF guard."""

    mfa: MfaService
    sessions: SessionStore
    csrf: CsrfGuard


async def _pages(mfa: MfaServiceDep, sessions: SessionStoreDep, csrf: CsrfGuardDep) -> _Pages:
    return _Pages(mfa, sessions, csrf)


def _start_page(
    c: _Pages, session: BrowserSession, next_path: str, message: str = "", status: int = 200
) -> Response:
    principal = session.principal
    return render_page(
        "enrol_start.html",
        status,
        title=_TITLE,
        required=c.mfa.required_for(principal.role),
        role=principal.role,
        message=message,
        csrf_token=session.csrf_token(c.csrf),
        next=next_path,
    )


def _scan_page(
    c: _Pages,
    session: BrowserSession,
    next_path: str,
    enrolment: Enrolment | None,
    message: str = "",
    status: int = 200,
) -> Response:
    secret = enrolment.secret if enrolment else ""
    return render_page(
        "enrol_scan.html",
        status,
        title=_TITLE,
        enrolment=enrolment,
        # Groups of four are easier to type; authenticator apps ignore the spaces.
        secret_groups=" ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
        message=message,
        csrf_token=session.csrf_token(c.csrf),
        next=next_path,
    )


@router.get(ENROL_PATH, dependencies=[Depends(public)])
async def enrol_page(request: Request, next: str = "/", c: _Pages = Depends(_pages)) -> Response:
    """Why and how to enrol, and a button to start (the session is the credential)."""
    target = local_path(next)
    session = await browser_session(request, c.sessions)
    if session is None:
        return sign_in_first(enrolment_path(target))
    if session.principal.mfa_enabled:
        return RedirectResponse(target, status_code=303)
    return _start_page(c, session, target)


@dataclass(frozen=True)
class _Post:
    session: BrowserSession
    fields: dict[str, str]
    context: RequestContext  # names the signed-in user, for the audit trail
    target: str


async def _posted(request: Request, c: _Pages) -> _Post | Response:
    """The session and fields of a same-origin form post with its CSRF token, or the answer."""
    fields = await form_fields(request)
    target = local_path(fields.get("next"))
    session = await browser_session(request, c.sessions)
    if session is None:
        return sign_in_first(enrolment_path(target))
    context = context_of(request)
    try:
        await require_form_csrf(request, c.csrf, context, session, fields)
    except CsrfFailed:
        return refused_page()
    return _Post(session, fields, context, target)


@router.post(ENROL_PATH, dependencies=[Depends(public)])
async def begin_enrolment(request: Request, c: _Pages = Depends(_pages)) -> Response:
    """A new pending secret (audited), shown as a QR code and a key, with the confirm form."""
    post = await _posted(request, c)
    if isinstance(post, Response):
        return post
    try:
        enrolment = await run_in_threadpool(
            c.mfa.begin_enrolment, post.session.principal, post.context
        )
    except Conflict:
        return RedirectResponse(post.target, status_code=303)  # already enrolled
    return _scan_page(c, post.session, post.target, enrolment)


@router.post(f"{ENROL_PATH}/confirm", dependencies=[Depends(public)])
async def confirm_enrolment(request: Request, c: _Pages = Depends(_pages)) -> Response:
    """Activate MFA with a first code; the ten backup codes are shown this once."""
    post = await _posted(request, c)
    if isinstance(post, Response):
        return post
    session, target = post.session, post.target
    code = post.fields.get("code", "").strip()
    if not code:
        return _scan_page(c, session, target, None, "Enter the code your app shows.", 400)
    try:
        # Ten backup codes are hashed with argon2: on the hashing threads.
        codes = await run_hashing(
            request, c.mfa.confirm_enrolment, session.principal, code, post.context
        )
    except MfaCodeRejected:
        message = "That code did not match. Check the time on your phone and enter the new code."
        return _scan_page(c, session, target, None, message, 400)
    except TooManyAttempts:
        return message_page(
            _TITLE,
            "Too many wrong codes. Wait a few minutes and try again.",
            429,
            enrolment_path(target),
        )
    except Conflict:
        if await _enrolled(c, session):
            return RedirectResponse(target, status_code=303)
        message = "This setup expired (after 15 minutes). Start again for a new key."
        return _start_page(c, session, target, message, 409)
    return render_page("enrol_done.html", title="Backup codes", codes=codes, next=target)


async def _enrolled(c: _Pages, session: BrowserSession) -> bool:
    return await run_in_threadpool(c.mfa.enabled, session.principal.user_id)
