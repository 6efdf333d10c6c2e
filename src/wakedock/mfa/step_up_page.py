"""The fresh code a page asks for (docs/zerotrust.md, "On requests"): a page the zero-trust
engine stepped up sends the browser here (`auth/forms.py`, `FreshCodeOnPage`), and back to the
page once the code is given.

`GET /mfa/step-up?next=<local path>` shows the form; `POST` (this server's origin and the
session's CSRF token) checks the code with MFA's own step-up (rate limited, a replayed code
refused, audited `mfa_step_up` or `mfa_failure`), then redirects to `next` on this host.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from wakedock.auth.deps import CsrfGuardDep, SessionStoreDep
from wakedock.auth.forms import (
    STEP_UP_PATH,
    BrowserSession,
    browser_session,
    enrolment_path,
    form_fields,
    refused_page,
    require_form_csrf,
    sign_in_first,
)
from wakedock.errors import CsrfFailed
from wakedock.mfa.code_form import NO_SECOND_FACTOR, TITLE, check_fresh_code
from wakedock.mfa.deps import MfaServiceDep
from wakedock.rbac.dependencies import public
from wakedock.web.deps import context_of
from wakedock.web.redirects import local_path
from wakedock.web.templating import message_page, render_page

router = APIRouter(tags=["pages"], include_in_schema=False)


@router.get(STEP_UP_PATH, dependencies=[Depends(public)])
async def step_up_page(
    request: Request,
    sessions: SessionStoreDep,
    mfa: MfaServiceDep,
    csrf: CsrfGuardDep,
    next: str = "/",
) -> Response:
    """The code form, for a signed-in browser."""
    target = local_path(next)
    found = await _session(request, sessions, mfa, target)
    if isinstance(found, Response):
        return found
    if not found.principal.mfa_enabled:
        return message_page(TITLE, NO_SECOND_FACTOR, 403)
    return _form(found, csrf, target)


@router.post(STEP_UP_PATH, dependencies=[Depends(public)])
async def give_code(
    request: Request,
    sessions: SessionStoreDep,
    mfa: MfaServiceDep,
    csrf: CsrfGuardDep,
    next: str = "/",
) -> Response:
    """The fresh code: MFA's own step-up, then back to the page that asked for it."""
    target = local_path(next)
    found = await _session(request, sessions, mfa, target)
    if isinstance(found, Response):
        return found
    fields = await form_fields(request)
    context = context_of(request)
    try:
        await require_form_csrf(request, csrf, context, found, fields)
    except CsrfFailed:
        return refused_page()
    if not found.principal.mfa_enabled:
        return message_page(TITLE, NO_SECOND_FACTOR, 403)
    refused = await check_fresh_code(request, mfa, found, fields, context)
    if refused is not None:
        return _form(found, csrf, target, message=refused[0], status=refused[1])
    return RedirectResponse(target, status_code=303)


async def _session(
    request: Request, sessions: SessionStoreDep, mfa: MfaServiceDep, target: str
) -> BrowserSession | Response:
    here = f"{STEP_UP_PATH}?" + urlencode({"next": target})
    session = await browser_session(request, sessions)
    if session is None:
        return sign_in_first(here)
    if mfa.enrolment_pending(session.principal):
        return RedirectResponse(enrolment_path(here), status_code=303)
    return session


def _form(
    session: BrowserSession,
    csrf: CsrfGuardDep,
    target: str,
    *,
    message: str = "",
    status: int = 200,
) -> Response:
    return render_page(
        "handoff_code.html",
        status,
        title=TITLE,
        action=f"{STEP_UP_PATH}?" + urlencode({"next": target}),
        host=None,
        message=message,
        csrf_token=session.csrf_token(csrf),
    )
