"""What the admin host's HTML forms share: a bounded form parser, the signed-in browser, and
the CSRF check of a form post (the session-bound token from a hidden field or the header)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, quote

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse

from wakedock.auth.csrf import CSRF_HEADER, CsrfGuard
from wakedock.auth.dependencies import SESSION_COOKIE
from wakedock.auth.sessions import Principal, SessionStore
from wakedock.context import RequestContext
from wakedock.errors import InvalidInput
from wakedock.web.templating import message_page

# The body limit of every form page (sign-in, code, enrolment), enforced while reading by
# web/body_limit.py.
MAX_FORM_BYTES = 16 * 1024
CSRF_FIELD = "csrf_token"
ENROL_PATH = "/mfa/enrol"
# Where a page the zero-trust engine stepped up sends the browser for a fresh code.
STEP_UP_PATH = "/mfa/step-up"
FORM_PATHS = ("/login", "/login/code", ENROL_PATH, f"{ENROL_PATH}/confirm", STEP_UP_PATH)


class FreshCodeOnPage(Exception):
    """A page the zero-trust engine stepped up (a browser opening it): the answer is the code
    page (`STEP_UP_PATH`), then back to `next_path`. Raised by the pages' guard, answered by
    the app's handler (`fresh_code_first`)."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


async def form_fields(request: Request) -> dict[str, str]:
    """URL-encoded form fields (no multipart parser needed); the body is at most
    MAX_FORM_BYTES (web/body_limit.py refuses more while reading)."""
    raw = await request.body()
    try:
        parsed = parse_qs(raw.decode(), keep_blank_values=True, max_num_fields=8)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("the form could not be parsed") from None
    return {key: values[-1][:4096] for key, values in parsed.items()}


@dataclass(frozen=True)
class BrowserSession:
    """The live session behind a browser's session cookie."""

    secret: str
    principal: Principal

    def csrf_token(self, csrf: CsrfGuard) -> str:
        return csrf.token(self.secret)


async def browser_session(request: Request, sessions: SessionStore) -> BrowserSession | None:
    """The caller's live cookie session, or None (no cookie, expired or revoked)."""
    secret = request.cookies.get(SESSION_COOKIE)
    if not secret:
        return None
    principal = sessions.cached_by_secret(secret) or (
        await run_in_threadpool(sessions.principal_by_secret, secret)
    )
    if principal is None:
        return None
    # The audit context of this request names the user from here on.
    request.state.principal = principal
    return BrowserSession(secret, principal)


async def require_form_csrf(
    request: Request,
    csrf: CsrfGuard,
    context: RequestContext,
    session: BrowserSession,
    fields: dict[str, str],
) -> None:
    """Refuse (audited CsrfFailed) a form post not from this server or without the token."""
    presented = fields.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    await csrf.require(request, context, session.secret, session.principal.username, presented)


def sign_in_first(here: str) -> RedirectResponse:
    """Send the browser to the sign-in form, to come back to `here` (a local path) after."""
    return RedirectResponse(f"/login?next={quote(here, safe='')}", status_code=303)


def fresh_code_first(next_path: str) -> RedirectResponse:
    """Send the browser for a fresh code, to come back to `next_path` (a local path) after."""
    return RedirectResponse(f"{STEP_UP_PATH}?next={quote(next_path, safe='')}", status_code=303)


def enrolment_path(next_path: str) -> str:
    """The enrolment page, going on to `next_path` (a local path) once done."""
    return f"{ENROL_PATH}?next={quote(next_path, safe='')}"


def refused_page() -> HTMLResponse:
    """What a person sees when a form post came from another site (or lost its token)."""
    return message_page(
        "Request refused",
        "This form was not sent from a WakeDock page. Open WakeDock again and retry.",
        403,
        link="/login",
        link_text="Go to sign-in",
    )
