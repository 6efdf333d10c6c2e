"""Who is calling: a bearer access token or the browser session cookie (with CSRF)."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from wakedock.audit.events import Event, EventType, Outcome
from wakedock.auth.csrf import CSRF_HEADER, SAFE_METHODS, csrf_valid
from wakedock.auth.sessions import Principal
from wakedock.components import Components
from wakedock.context import RequestContext
from wakedock.errors import CsrfFailed, NotAuthenticated
from wakedock.web.deps import components_of, context_of

SESSION_COOKIE = "__Host-wakedock_session"


# The `Sec-Fetch-Site` values of a request no other site started. `none` means the user started
# it (address bar, bookmark, the browser's own re-post of a form): no page can make a browser send
# it, for a POST either, so it proves as much as `same-origin` (Go's net/http
# CrossOriginProtection reads it the same way). `same-site` is refused: the service hosts
# (`app.localhost`) are same-site with the admin host, and the apps behind them are not trusted.
_NO_OTHER_SITE = frozenset({"same-origin", "none"})


def same_origin(request: Request, c: Components) -> bool:
    """False when a browser says, or shows, that another site started this request.

    Read the way browsers define it, most trusted first: `Sec-Fetch-Site` (no page can set it),
    else `Origin` (this server's scheme and host:port, or an allowed CORS origin), else `Referer`
    on this server. A foreign `Origin` is refused whatever the other headers say; `Origin: null`
    (sandboxed frames, a `no-referrer` page, a redirect across sites) proves nothing and is
    refused when nothing else proves the request same-origin. A request with none of the three
    headers comes from no browser: it carries no victim's cookie (the CSRF token still applies).
    """
    headers = request.headers
    origin = headers.get("origin")
    named = origin if origin != "null" else None  # an Origin that names a site
    allowed = origin is not None and origin in c.settings.http.cors_origins
    if named is not None and not allowed and not _on_this_server(named, request):
        return False
    site = headers.get("sec-fetch-site")
    if site is not None:
        return site.strip().lower() in _NO_OTHER_SITE or allowed
    if named is not None:
        return True
    referer = headers.get("referer")
    if referer is not None:
        return _on_this_server(referer, request)
    return origin is None


def _on_this_server(url: str, request: Request) -> bool:
    """`url` (an Origin or a Referer) names this server: its host:port and scheme.

    `https` is accepted on a plain-HTTP request too: behind a TLS-terminating proxy the browser's
    scheme is https while the request reaches WakeDock over http.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    host = request.headers.get("host", "")
    return (
        bool(host)
        and parts.netloc.lower() == host.lower()
        and parts.scheme in {"https", request.url.scheme}
    )


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
            await require_csrf(
                request, c, context, cookie, principal, request.headers.get(CSRF_HEADER)
            )
    else:
        raise NotAuthenticated("Authentication required")
    if principal is None:
        raise NotAuthenticated("Session expired or revoked")
    return principal


async def require_csrf(
    request: Request,
    c: Components,
    context: RequestContext,
    cookie: str,
    principal: Principal,
    presented: str | None,
) -> None:
    """A cookie-authenticated state change needs this server's origin and the session's CSRF
    token (`presented`: the X-CSRF-Token header, or a page's hidden form field); else audited 403.
    """
    if same_origin(request, c) and csrf_valid(c.keyring, cookie, presented):
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
