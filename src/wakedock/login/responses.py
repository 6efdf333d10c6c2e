"""Turning an opened session into the HTTP answer: bearer tokens or a browser cookie."""

from __future__ import annotations

from fastapi import Response

from wakedock.auth.csrf import CsrfGuard
from wakedock.auth.dependencies import SESSION_COOKIE
from wakedock.login.schemas import CookieLoginResponse, SessionMode, TokenResponse
from wakedock.login.service import Tokens
from wakedock.users.schemas import UserOut


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


def token_response(tokens: Tokens) -> TokenResponse:
    """The bearer answer: an access token and its refresh token."""
    return TokenResponse(
        access_token=tokens.access_token,
        expires_in=tokens.expires_in,
        refresh_token=tokens.refresh_token,
        session_id=tokens.session_id,
        user=UserOut.model_validate(tokens.user),
    )


def session_response(
    response: Response, tokens: Tokens, mode: SessionMode, csrf: CsrfGuard
) -> TokenResponse | CookieLoginResponse:
    """Bearer tokens in the body, or (mode "cookie") the session cookie and a CSRF token."""
    if mode == "cookie":
        set_session_cookie(response, tokens.session_secret, tokens.cookie_max_age)
        return CookieLoginResponse(
            csrf_token=csrf.token(tokens.session_secret),
            session_id=tokens.session_id,
            expires_in=tokens.cookie_max_age,
            user=UserOut.model_validate(tokens.user),
        )
    return token_response(tokens)
