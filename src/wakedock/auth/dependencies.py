"""Who is calling: a bearer access token or the browser session cookie (with CSRF)."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from wakedock.audit.events import Event, EventType, Outcome, RequestContext
from wakedock.auth.csrf import CSRF_HEADER, SAFE_METHODS, csrf_valid
from wakedock.auth.sessions import Principal
from wakedock.components import Components
from wakedock.errors import CsrfFailed, NotAuthenticated
from wakedock.web.deps import components_of, context_of

SESSION_COOKIE = "__Host-wakedock_session"


def same_origin(request: Request, c: Components) -> bool:
    """A browser's Origin (when sent) must be this server or an allowed CORS origin."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    if origin in c.settings.http.cors_origins:
        return True
    parts = urlsplit(origin)
    return parts.netloc == request.headers.get("host") and parts.scheme in {"https", "http"}


async def current_principal(request: Request) -> Principal:
    """Resolve the caller or raise 401; failures are audited.

    Runs on the event loop: a cached session costs no worker thread and no database query.
    """
    c = components_of(request)
    # Not a Depends: FastAPI would cache this actor-less context for the whole request.
    context = context_of(request)
    try:
        principal = await _authenticate(request, c, context)
    except NotAuthenticated as exc:
        refused = Event(
            EventType.UNAUTHORIZED_ACCESS,
            Outcome.DENIED,
            target=request.url.path,
            details={"method": request.method, "reason": exc.detail},
        )
        await run_in_threadpool(c.auth.audit, refused, context)
        raise
    request.state.principal = principal
    return principal


async def _authenticate(request: Request, c: Components, context: RequestContext) -> Principal:
    authorization = request.headers.get("authorization")
    cookie = request.cookies.get(SESSION_COOKIE)
    principal: Principal | None
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthenticated("Bearer token required")
        claims = c.codec.decode(token.strip())
        principal = c.sessions.cached(claims.session_id, claims.user_id) or (
            await run_in_threadpool(c.sessions.principal, claims.session_id, claims.user_id)
        )
    elif cookie:
        principal = c.sessions.cached_by_secret(cookie) or (
            await run_in_threadpool(c.sessions.principal_by_secret, cookie)
        )
        if principal is not None and request.method not in SAFE_METHODS:
            await _check_csrf(request, c, context, cookie, principal)
    else:
        raise NotAuthenticated("Authentication required")
    if principal is None:
        raise NotAuthenticated("Session expired or revoked")
    return principal


async def _check_csrf(
    request: Request, c: Components, context: RequestContext, cookie: str, principal: Principal
) -> None:
    """A cookie-authenticated state change needs this server's Origin and the CSRF token."""
    if same_origin(request, c) and csrf_valid(c.keyring, cookie, request.headers.get(CSRF_HEADER)):
        return
    failed = Event(
        EventType.CSRF_FAILURE,
        Outcome.DENIED,
        target=request.url.path,
        details={"method": request.method},
    )
    as_user = RequestContext(
        ip=context.ip,
        user_agent=context.user_agent,
        request_id=context.request_id,
        actor=principal.username,
    )
    await run_in_threadpool(c.auth.audit, failed, as_user)
    raise CsrfFailed("CSRF token missing or invalid")
