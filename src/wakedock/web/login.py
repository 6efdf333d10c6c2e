"""Browser sign-in on the admin host, and the hand-off to protected service hosts (S7.7).

`GET /auth/proxy?next=<service URL>` is where a service host sends a visitor without access: with
a live session it issues a single-use ticket for that host and sends the browser back; otherwise
it sends it to `/login` first. Only URLs of known service hosts are accepted (no open redirect).
"""

from __future__ import annotations

import html
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from wakedock.audit.events import RequestContext
from wakedock.auth.dependencies import SESSION_COOKIE
from wakedock.auth.responses import refuse_cross_site_cookie_login, set_session_cookie
from wakedock.auth.slots import run_hashing
from wakedock.components import Components
from wakedock.errors import InvalidCredentials, InvalidInput, TooManyAttempts
from wakedock.mfa.service import Challenge
from wakedock.proxy.hosts import normalise_host
from wakedock.rbac.dependencies import public
from wakedock.web.deps import components, request_context
from wakedock.web.redirects import local_path

router = APIRouter(tags=["pages"], include_in_schema=False)
# The sign-in form's body limit, enforced by web/body_limit.py.
MAX_FORM_BYTES = 16 * 1024


def _form(next_path: str, message: str = "", status: int = 200) -> HTMLResponse:
    note = f'<p role="alert">{html.escape(message)}</p>' if message else ""
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in - WakeDock</title></head>
<body><h1>Sign in to WakeDock</h1>{note}
<form method="post" action="/login">
<input type="hidden" name="next" value="{html.escape(next_path)}">
<p><label>Username <input name="username" autocomplete="username" required></label></p>
<p><label>Password <input name="password" type="password" autocomplete="current-password"
 required></label></p>
<p><label>Authenticator code (if enabled) <input name="code" inputmode="numeric"
 autocomplete="one-time-code"></label></p>
<p><button type="submit">Sign in</button></p>
</form></body></html>
"""
    return HTMLResponse(body, status_code=status)


async def _form_fields(request: Request) -> dict[str, str]:
    """URL-encoded form fields (no multipart parser needed). The body is at most
    MAX_FORM_BYTES: web/body_limit.py refuses more while reading."""
    raw = await request.body()
    try:
        parsed = parse_qs(raw.decode(), keep_blank_values=True, max_num_fields=8)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("the form could not be parsed") from None
    return {key: values[-1][:4096] for key, values in parsed.items()}


@router.get("/login", dependencies=[Depends(public)])
async def login_page(next: str = "/") -> HTMLResponse:
    return _form(local_path(next))


@router.post("/login", dependencies=[Depends(public)])
async def login_form(
    request: Request,
    c: Components = Depends(components),
    context: RequestContext = Depends(request_context),
) -> Response:
    """Password (and code) sign-in for browsers: the session cookie, then back to `next`."""
    await refuse_cross_site_cookie_login(request, c, context)
    fields = await _form_fields(request)
    username, password = fields.get("username", ""), fields.get("password", "")
    code, target = fields.get("code", ""), local_path(fields.get("next"))
    if not username or not password:
        return _form(target, "Enter your username and password.", 400)
    try:
        result = await run_hashing(
            request, c.auth.login, username, password, context, code.strip() or None
        )
    except InvalidCredentials as exc:
        return _form(target, exc.detail, 401)
    except TooManyAttempts:
        return _form(target, "Too many attempts. Wait a few minutes and try again.", 429)
    if isinstance(result, Challenge):
        return _form(target, "Enter your password and the code from your authenticator app.", 401)
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, result.session_secret, c.settings.auth.session_absolute_seconds)
    return response


@router.get("/auth/proxy", dependencies=[Depends(public)])
async def proxy_handoff(
    request: Request,
    next: str = "",
    c: Components = Depends(components),
) -> Response:
    """Send a signed-in browser back to a protected service host with a one-time ticket."""
    parts = urlsplit(next)
    host = normalise_host(parts.netloc)
    directory = c.directory
    if directory.stale():
        await run_in_threadpool(directory.refresh)
    if parts.scheme not in ("http", "https") or host is None or not directory.knows(host):
        return HTMLResponse("<!doctype html><p>Unknown service address.</p>", status_code=400)
    secret = request.cookies.get(SESSION_COOKIE)
    principal = None
    if secret:
        principal = c.sessions.cached_by_secret(secret) or (
            await run_in_threadpool(c.sessions.principal_by_secret, secret)
        )
    if principal is None:
        here = "/auth/proxy?" + urlencode({"next": next})
        return RedirectResponse(f"/login?next={quote(here, safe='')}", status_code=303)
    ticket = c.proxy_access.issue_ticket(principal, host)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    query = urlencode({"ticket": ticket, "next": path})
    return RedirectResponse(f"{parts.scheme}://{parts.netloc}/_wakedock/auth?{query}", 303)
