"""Who is calling: a bearer access token or the browser session cookie (with CSRF)."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import Depends, Request

from wakedock.audit.events import Event, EventType, Outcome, RequestContext
from wakedock.auth.csrf import CSRF_HEADER, SAFE_METHODS, csrf_valid
from wakedock.auth.sessions import Principal
from wakedock.components import Components
from wakedock.errors import CsrfFailed, NotAuthenticated
from wakedock.web.deps import components, request_context

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


def current_principal(
    request: Request,
    c: Components = Depends(components),
) -> Principal:
    """Resolve the caller or raise 401; failures are audited."""
    # Not a Depends: FastAPI would cache this actor-less context for the whole request.
    context = request_context(request)
    authorization = request.headers.get("authorization")
    cookie = request.cookies.get(SESSION_COOKIE)
    principal: Principal | None = None
    try:
        if authorization is not None:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise NotAuthenticated("Bearer token required")
            claims = c.codec.decode(token.strip())
            principal = c.sessions.principal(claims.session_id, claims.user_id)
        elif cookie:
            principal = c.sessions.principal_by_secret(cookie)
            if (
                principal is not None
                and request.method not in SAFE_METHODS
                and not (
                    same_origin(request, c)
                    and csrf_valid(c.keyring, cookie, request.headers.get(CSRF_HEADER))
                )
            ):
                c.auth.audit(
                    Event(
                        EventType.CSRF_FAILURE,
                        Outcome.DENIED,
                        target=request.url.path,
                        details={"method": request.method},
                    ),
                    RequestContext(
                        ip=context.ip,
                        user_agent=context.user_agent,
                        request_id=context.request_id,
                        actor=principal.username,
                    ),
                )
                raise CsrfFailed("CSRF token missing or invalid")
        else:
            raise NotAuthenticated("Authentication required")
        if principal is None:
            raise NotAuthenticated("Session expired or revoked")
    except NotAuthenticated as exc:
        c.auth.audit(
            Event(
                EventType.UNAUTHORIZED_ACCESS,
                Outcome.DENIED,
                target=request.url.path,
                details={"method": request.method, "reason": exc.detail},
            ),
            context,
        )
        raise
    request.state.principal = principal
    return principal
