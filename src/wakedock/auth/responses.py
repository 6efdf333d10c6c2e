"""Turning an opened session into the HTTP answer: bearer tokens or a browser cookie."""

from __future__ import annotations

from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool

from wakedock.audit.events import Event, EventType, Outcome
from wakedock.auth.csrf import csrf_token
from wakedock.auth.dependencies import SESSION_COOKIE, same_origin
from wakedock.auth.schemas import CookieLoginResponse, TokenResponse
from wakedock.auth.service import Tokens
from wakedock.components import Components
from wakedock.context import RequestContext
from wakedock.errors import CsrfFailed
from wakedock.users.schemas import UserOut


async def refuse_cross_site_cookie_login(
    request: Request, c: Components, context: RequestContext
) -> None:
    """Login CSRF: a foreign page must not plant its session cookie in the victim's browser."""
    if same_origin(request, c):
        return
    refused = Event(
        EventType.CSRF_FAILURE,
        Outcome.DENIED,
        target=request.url.path,
        details={"method": "POST", "reason": "foreign origin on cookie login"},
    )
    await run_in_threadpool(c.auth.audit, refused, context)
    raise CsrfFailed("cross-site login refused")


def set_session_cookie(response: Response, secret: str, max_age: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=max_age,
        path="/",
        secure=True,
        httponly=True,
        samesite="strict",
    )


def session_response(
    c: Components, response: Response, tokens: Tokens, mode: str
) -> TokenResponse | CookieLoginResponse:
    """Bearer tokens in the body, or (mode "cookie") the session cookie and a CSRF token."""
    user = UserOut.model_validate(tokens.user)
    if mode == "cookie":
        max_age = c.settings.auth.session_absolute_seconds
        set_session_cookie(response, tokens.session_secret, max_age)
        return CookieLoginResponse(
            csrf_token=csrf_token(c.keyring, tokens.session_secret),
            session_id=tokens.session_id,
            expires_in=max_age,
            user=user,
        )
    return TokenResponse(
        access_token=tokens.access_token,
        expires_in=c.codec.ttl_seconds,
        refresh_token=tokens.refresh_token,
        session_id=tokens.session_id,
        user=user,
    )
