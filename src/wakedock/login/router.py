"""/api/v1/auth: login (and its MFA step), refresh, logout, me, csrf, password, register, setup,
sessions."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from wakedock.auth.dependencies import SESSION_COOKIE
from wakedock.auth.deps import CsrfGuardDep
from wakedock.auth.hashing import run_hashing
from wakedock.auth.models import UserSession
from wakedock.auth.sessions import Principal
from wakedock.context import RequestContext
from wakedock.errors import InvalidInput
from wakedock.login.challenges import Challenge
from wakedock.login.deps import LoginFlowDep, PasswordChangerDep
from wakedock.login.responses import session_response, token_response
from wakedock.login.schemas import (
    CookieLoginResponse,
    CsrfResponse,
    LoginRequest,
    MfaChallengeResponse,
    PasswordChange,
    RefreshRequest,
    RegisterRequest,
    SessionOut,
    SetupRequest,
    TokenResponse,
    VerifyRequest,
)
from wakedock.rbac.dependencies import public, requires
from wakedock.rbac.permissions import Permission
from wakedock.users.deps import SessionAdminDep, SignupDep
from wakedock.users.schemas import UserOut
from wakedock.web.deps import db_transaction, request_context, request_headers
from wakedock.web.openapi import errors
from wakedock.web.params import RowId

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


# The login body's limit (web/body_limit.py enforces it while reading): credentials are small.
MAX_LOGIN_BODY_BYTES = 16 * 1024


async def _login_body(request: Request) -> LoginRequest:
    """JSON or URL-encoded form fields (the OAuth2 password-grant shape), both accepted."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in {"application/json", "application/x-www-form-urlencoded"}:
        raise InvalidInput("send the credentials as JSON or form fields")
    raw = await request.body()
    data: Any
    try:
        if content_type == "application/json":
            data = json.loads(raw)
        else:
            fields = parse_qs(raw.decode(), keep_blank_values=True, max_num_fields=8)
            data = {k: v[-1] for k, v in fields.items()}
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("the credentials could not be parsed") from None
    if not isinstance(data, dict):
        raise InvalidInput("credentials must be an object with username and password")
    try:
        return LoginRequest.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput("username and password are required") from exc


# The body is read by hand (JSON or form, bounded): described here for the OpenAPI document.
_LOGIN_SCHEMA = LoginRequest.model_json_schema()
_LOGIN_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _LOGIN_SCHEMA},
            "application/x-www-form-urlencoded": {"schema": _LOGIN_SCHEMA},
        },
    }
}


@router.post(
    "/login",
    response_model=TokenResponse | CookieLoginResponse | MfaChallengeResponse,
    dependencies=[Depends(public)],
    responses=errors(400, 401, 403, 413, 429),
    openapi_extra=_LOGIN_BODY,
)
async def login(
    request: Request,
    response: Response,
    flow: LoginFlowDep,
    csrf: CsrfGuardDep,
    context: RequestContext = Depends(request_context),
) -> TokenResponse | CookieLoginResponse | MfaChallengeResponse:
    """Password login (form or JSON). With MFA: a challenge, or one step with `code`."""
    body = await _login_body(request)
    if body.mode == "cookie":
        await csrf.refuse_cross_site_login(request, context)
    result = await run_hashing(
        request,
        flow.login,
        body.username,
        body.password,
        context,
        body.code,
        request_headers(request),
    )
    if isinstance(result, Challenge):
        return MfaChallengeResponse(challenge_token=result.token, expires_in=result.expires_in)
    return session_response(response, result, body.mode, csrf)


@router.post(
    "/mfa/verify",
    response_model=TokenResponse | CookieLoginResponse,
    tags=["mfa"],
    dependencies=[Depends(public)],
    responses=errors(401, 403, 429),
)
async def verify(
    body: VerifyRequest,
    request: Request,
    response: Response,
    flow: LoginFlowDep,
    csrf: CsrfGuardDep,
    context: RequestContext = Depends(request_context),
) -> TokenResponse | CookieLoginResponse:
    """Second login step: the challenge token and a TOTP or backup code open the session."""
    if body.mode == "cookie":
        await csrf.refuse_cross_site_login(request, context)
    tokens = await run_hashing(
        request,
        flow.complete_mfa,
        body.challenge_token,
        body.code,
        context,
        request_headers(request),
    )
    return session_response(response, tokens, body.mode, csrf)


@router.post(
    "/refresh",
    response_model=TokenResponse,
    dependencies=[Depends(public)],
    responses=errors(401),
)
def refresh(
    body: RefreshRequest,
    flow: LoginFlowDep,
    context: RequestContext = Depends(request_context),
) -> TokenResponse:
    return token_response(flow.refresh(body.refresh_token, context))


@router.post("/logout", status_code=204)
def logout(
    flow: LoginFlowDep,
    principal: Principal = Depends(requires(Permission.ACCOUNT_WRITE, during_enrolment=True)),
    context: RequestContext = Depends(request_context),
) -> Response:
    flow.logout(principal, context)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


@router.get("/me", response_model=UserOut)
async def me(
    principal: Principal = Depends(requires(Permission.ACCOUNT_READ, during_enrolment=True)),
) -> UserOut:
    """The caller's account, from its validated session (no extra database read)."""
    return UserOut(
        id=principal.user_id,
        username=principal.username,
        email=principal.email,
        role=principal.role,
        disabled=False,
        created_at=principal.created_at,
    )


@router.get(
    "/csrf",
    response_model=CsrfResponse,
    dependencies=[Depends(requires(Permission.ACCOUNT_READ))],
    responses=errors(400),
)
def csrf(request: Request, guard: CsrfGuardDep) -> CsrfResponse:
    """The CSRF token of the current browser session (after a page reload)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise InvalidInput("only browser (cookie) sessions use a CSRF token")
    return CsrfResponse(csrf_token=guard.token(cookie))


@router.post("/password", status_code=204, responses=errors(400, 429))
def change_password(
    body: PasswordChange,
    changer: PasswordChangerDep,
    principal: Principal = Depends(requires(Permission.ACCOUNT_WRITE)),
    context: RequestContext = Depends(request_context),
) -> Response:
    """Change one's own password; every other session of the user is revoked."""
    changer.change(principal, body.current_password, body.new_password, context)
    return Response(status_code=204)


@router.post(
    "/register",
    response_model=UserOut,
    status_code=201,
    dependencies=[Depends(public)],
    responses=errors(400, 403, 409),
)
def register(
    body: RegisterRequest,
    signup: SignupDep,
    db: Session = Depends(db_transaction),
    context: RequestContext = Depends(request_context),
) -> UserOut:
    """Self-registration (off by default): always the least-privileged role."""
    user = signup.register(
        db, context, username=body.username, password=body.password, email=body.email
    )
    return UserOut.model_validate(user)


@router.post(
    "/setup",
    response_model=UserOut,
    status_code=201,
    dependencies=[Depends(public)],
    responses=errors(400, 403, 409),
)
def setup(
    body: SetupRequest,
    signup: SignupDep,
    db: Session = Depends(db_transaction),
    context: RequestContext = Depends(request_context),
) -> UserOut:
    """Create the first admin with the one-time token printed at first start.

    A refused password leaves the token usable; it is spent only when the admin is created.
    """
    user = signup.first_admin(
        db,
        context,
        token=body.token,
        username=body.username,
        password=body.password,
        email=body.email,
    )
    return UserOut.model_validate(user)


def _session_out(row: UserSession, current: str) -> SessionOut:
    return SessionOut(
        id=row.id,
        user_id=row.user_id,
        ip=row.ip,
        user_agent=row.user_agent,
        created_at=row.created_at,
        last_seen_at=row.last_seen_at,
        expires_at=row.expires_at,
        mfa_at=row.mfa_at,
        current=row.id == current,
    )


@router.get("/sessions", response_model=list[SessionOut])
def list_sessions(
    admin: SessionAdminDep,
    principal: Principal = Depends(requires(Permission.ACCOUNT_READ)),
    db: Session = Depends(db_transaction),
    user_id: RowId | None = Query(default=None, description="another user's (sessions:read)"),
    all_users: bool = Query(default=False, alias="all", description="everyone's (sessions:read)"),
) -> list[SessionOut]:
    """Live sessions: one's own, or (with sessions:read) another user's or everyone's."""
    rows = admin.live(db, principal, user_id=user_id, all_users=all_users)
    return [_session_out(row, principal.session_id) for row in rows]


@router.delete("/sessions/{session_id}", status_code=204)
def revoke_session(
    session_id: str,
    admin: SessionAdminDep,
    principal: Principal = Depends(requires(Permission.ACCOUNT_WRITE)),
    db: Session = Depends(db_transaction),
    context: RequestContext = Depends(request_context),
) -> Response:
    """Revoke one session: one's own, or anyone's with sessions:revoke."""
    admin.revoke(db, context, principal, session_id)
    return Response(status_code=204)
