"""Who is calling: a bearer access token or the browser session cookie (with CSRF)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from wakedock.audit.events import Event, EventType, Outcome
from wakedock.audit.service import Auditor
from wakedock.auth.csrf import CSRF_HEADER, SAFE_METHODS, CsrfGuard
from wakedock.auth.sessions import Principal, SessionStore
from wakedock.auth.tokens import TokenCodec
from wakedock.context import RequestContext
from wakedock.errors import NotAuthenticated
from wakedock.web.deps import context_of
from wakedock.web.provided import provider

SESSION_COOKIE = "__Host-wakedock_session"


@dataclass(frozen=True)
class Authenticator:
    """What resolving the caller uses, as one dependency: every guarded request resolves it, and
    each FastAPI dependency costs tens of microseconds per request (bench/auth_overhead.py)."""

    codec: TokenCodec
    sessions: SessionStore
    csrf: CsrfGuard
    auditor: Auditor


authenticator = provider(Authenticator)
AuthenticatorDep = Annotated[Authenticator, Depends(authenticator)]


async def current_principal(request: Request, authn: AuthenticatorDep) -> Principal:
    """Resolve the caller or raise 401; failures are audited.

    Runs on the event loop: a cached session costs no worker thread and no database query.
    """
    # Not a Depends: FastAPI would cache this actor-less context for the whole request.
    context = context_of(request)
    try:
        principal = await _authenticate(request, authn, context)
    except NotAuthenticated as exc:
        refused = Event(
            EventType.UNAUTHORIZED_ACCESS,
            Outcome.DENIED,
            target=request.url.path,
            details={"method": request.method, "reason": exc.detail},
        )
        await run_in_threadpool(authn.auditor.record, refused, context)
        raise
    request.state.principal = principal
    return principal


async def _authenticate(
    request: Request, authn: Authenticator, context: RequestContext
) -> Principal:
    codec, sessions = authn.codec, authn.sessions
    authorization = request.headers.get("authorization")
    cookie = request.cookies.get(SESSION_COOKIE)
    principal: Principal | None
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthenticated("Bearer token required")
        claims = codec.decode(token.strip())
        principal = sessions.cached(claims.session_id, claims.user_id) or (
            await run_in_threadpool(sessions.principal, claims.session_id, claims.user_id)
        )
    elif cookie:
        principal = sessions.cached_by_secret(cookie) or (
            await run_in_threadpool(sessions.principal_by_secret, cookie)
        )
        if principal is not None and request.method not in SAFE_METHODS:
            presented = request.headers.get(CSRF_HEADER)
            await authn.csrf.require(request, context, cookie, principal.username, presented)
    else:
        raise NotAuthenticated("Authentication required")
    if principal is None:
        raise NotAuthenticated("Session expired or revoked")
    return principal
