"""Browser sign-in on the admin host: the HTML face of the login flow (login/service.py).

`/login` takes the password; an account with MFA then gets a second step for its code (or a
backup code); an account whose role must use MFA and has none is sent to the enrolment page
(mfa/pages.py). A sign-in that started at a protected service host ends at the hand-off
(proxy/handoff.py), which sends the browser back there with a ticket.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from wakedock.auth.deps import CsrfGuardDep
from wakedock.auth.forms import enrolment_path, form_fields, refused_page
from wakedock.auth.hashing import run_hashing
from wakedock.auth.zerotrust import StepUpNeeded, ZeroTrustRefused
from wakedock.context import RequestContext
from wakedock.errors import CsrfFailed, InvalidCredentials, NotAuthenticated, TooManyAttempts
from wakedock.login.challenges import Challenge
from wakedock.login.deps import LoginFlowDep
from wakedock.login.responses import set_session_cookie
from wakedock.login.service import Tokens
from wakedock.mfa.deps import MfaServiceDep
from wakedock.mfa.errors import MfaLoginRejected
from wakedock.mfa.service import MfaService
from wakedock.proxy.access import HANDOFF_PATH
from wakedock.rbac.dependencies import public
from wakedock.web.deps import request_context, request_headers
from wakedock.web.redirects import local_path
from wakedock.web.templating import render_page

router = APIRouter(tags=["pages"], include_in_schema=False)

_TOO_MANY = "Too many attempts. Wait a few minutes and try again."


def _password_step(next_path: str, message: str = "", status: int = 200) -> HTMLResponse:
    return render_page("login.html", status, title="Sign in", next=next_path, message=message)


def _code_step(
    next_path: str, challenge: str, message: str = "", status: int = 200
) -> HTMLResponse:
    return render_page(
        "login_code.html",
        status,
        title="Two-step verification",
        next=next_path,
        challenge=challenge,
        message=message,
    )


def _signed_in(mfa: MfaService, tokens: Tokens, target: str) -> Response:
    """The session cookie, and on to `target`, or first to the enrolment page if the role
    demands MFA the account does not have yet."""
    user = tokens.user
    response: Response
    if mfa.must_enrol(user.role, user.mfa_enabled):
        response = RedirectResponse(enrolment_path(target), status_code=303)
    elif urlsplit(target).path == HANDOFF_PATH:
        # The hand-off redirects to a service host, and browsers apply the sign-in page's CSP
        # `form-action 'self'` to every redirect of a form post: a page that moves on by itself
        # starts a new navigation instead (no script needed).
        response = render_page("continue.html", title="Signed in", next=target)
    else:
        response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, tokens.session_secret, tokens.cookie_max_age)
    return response


@router.get("/login", dependencies=[Depends(public)])
async def login_page(next: str = "/") -> HTMLResponse:
    return _password_step(local_path(next))


@router.post("/login", dependencies=[Depends(public)])
async def login_form(
    request: Request,
    flow: LoginFlowDep,
    mfa: MfaServiceDep,
    csrf: CsrfGuardDep,
    context: RequestContext = Depends(request_context),
) -> Response:
    """The password step for browsers: a session cookie and back to `next`, or the code step.

    A `code` field, when sent, does both steps at once (as the API's one-step login).
    """
    try:
        await csrf.refuse_cross_site_login(request, context)
    except CsrfFailed:
        return refused_page()
    fields = await form_fields(request)
    username, password = fields.get("username", ""), fields.get("password", "")
    code, target = fields.get("code", "").strip(), local_path(fields.get("next"))
    if not username or not password:
        return _password_step(target, "Enter your username and password.", 400)
    try:
        result = await run_hashing(
            request, flow.login, username, password, context, code or None, request_headers(request)
        )
    except (InvalidCredentials, MfaLoginRejected) as exc:
        return _password_step(target, exc.detail, 401)
    except TooManyAttempts:
        return _password_step(target, _TOO_MANY, 429)
    except (ZeroTrustRefused, StepUpNeeded) as exc:
        # The reason is the admin's to read (the reference finds it in the audit trail).
        return _password_step(target, exc.detail, 403)
    if isinstance(result, Challenge):
        return _code_step(target, result.token)
    return _signed_in(mfa, result, target)


@router.post("/login/code", dependencies=[Depends(public)])
async def login_code_form(
    request: Request,
    flow: LoginFlowDep,
    mfa: MfaServiceDep,
    csrf: CsrfGuardDep,
    context: RequestContext = Depends(request_context),
) -> Response:
    """The second step: the challenge of the password step and a TOTP or backup code."""
    try:
        await csrf.refuse_cross_site_login(request, context)
    except CsrfFailed:
        return refused_page()
    fields = await form_fields(request)
    challenge, code = fields.get("challenge", ""), fields.get("code", "").strip()
    target = local_path(fields.get("next"))
    if not challenge:
        return _password_step(target, "Enter your username and password first.", 400)
    if not code:
        return _code_step(target, challenge, "Enter the code from your authenticator app.", 400)
    try:
        tokens = await run_hashing(
            request, flow.complete_mfa, challenge, code, context, request_headers(request)
        )
    except MfaLoginRejected:
        message = "That code is not valid or was already used. Try the next code of your app."
        return _code_step(target, challenge, message, 401)
    except NotAuthenticated:
        return _password_step(target, "This sign-in expired. Enter your password again.", 401)
    except TooManyAttempts:
        return _password_step(target, _TOO_MANY, 429)
    return _signed_in(mfa, tokens, target)
