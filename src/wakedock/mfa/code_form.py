"""The fresh-code form that a zero-trust step-up brings a browser to, shared by the admin
host's pages (`mfa/step_up_page.py`) and a service host's way in (`proxy/handoff.py`): the
signed-in browser it needs, the form, and the posted code checked by MFA's own step-up (rate
limited, a replayed code refused, audited `mfa_step_up` or `mfa_failure`)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from wakedock.auth.csrf import CsrfGuard
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
from wakedock.auth.sessions import SessionStore
from wakedock.errors import CsrfFailed, TooManyAttempts
from wakedock.mfa.errors import MfaCodeRejected
from wakedock.mfa.service import MfaService
from wakedock.web.deps import context_of
from wakedock.web.templating import message_page, render_page

TITLE = "Confirm it is you"
NO_SECOND_FACTOR = (
    "The access policy asks for a code from an authenticator app before you continue, and "
    "your account has none. Enrol one on your account page, or ask an administrator."
)
# The form again, saying what went wrong: (message, status) -> the page.
Again = Callable[[str, int], Response]


async def code_session(
    request: Request,
    sessions: SessionStore,
    mfa: MfaService,
    here: str,
    *,
    for_code: bool = True,
) -> BrowserSession | Response:
    """The browser's live session, or where it must go first to come back to `here` (the
    sign-in form, the enrolment page); `for_code`: or the page saying the account has no
    second factor to give a code with."""
    session = await browser_session(request, sessions)
    if session is None:
        return sign_in_first(here)
    if mfa.enrolment_pending(session.principal):
        return RedirectResponse(enrolment_path(here), status_code=303)
    if for_code and not session.principal.mfa_enabled:
        return message_page(TITLE, NO_SECOND_FACTOR, 403)
    return session


def code_page(
    session: BrowserSession,
    csrf: CsrfGuard,
    action: str,
    *,
    host: str | None = None,
    message: str = "",
    status: int = 200,
) -> Response:
    """The form, posting to `action` (on this host); `host`: the service it leads to."""
    return render_page(
        "code_again.html",
        status,
        title=TITLE,
        action=action,
        host=host,
        message=message,
        csrf_token=session.csrf_token(csrf),
    )


async def take_code(
    request: Request, csrf: CsrfGuard, mfa: MfaService, session: BrowserSession, again: Again
) -> Response | None:
    """None when the posted code is accepted (the session's MFA time is now); else the answer:
    the refusal of a post from elsewhere, or the form again with what went wrong."""
    fields = await form_fields(request)
    context = context_of(request)
    try:
        await require_form_csrf(request, csrf, context, session, fields)
    except CsrfFailed:
        return refused_page()
    code = fields.get("code", "").strip()[:32]
    try:
        # A backup code is checked with argon2: on the hashing threads, as sign-in does.
        await run_hashing(request, mfa.step_up, session.principal, code, context)
    except MfaCodeRejected:
        return again("That code was not accepted. Try the current one.", 400)
    except TooManyAttempts as exc:
        return again(f"Too many codes tried. Wait {exc.retry_after} seconds and try again.", 429)
    return None
