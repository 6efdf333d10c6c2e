"""/api/v1/auth: login, refresh, logout, me, password, register, setup, sessions."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from wakedock.audit.events import Event, EventType, Outcome
from wakedock.audit.service import record_event
from wakedock.auth.csrf import csrf_token
from wakedock.auth.dependencies import SESSION_COOKIE
from wakedock.auth.errors import RegistrationDisabled, SetupUnavailable
from wakedock.auth.models import UserSession
from wakedock.auth.responses import refuse_cross_site_cookie_login, session_response
from wakedock.auth.schemas import (
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
)
from wakedock.auth.sessions import Principal
from wakedock.auth.slots import run_hashing
from wakedock.components import Components
from wakedock.context import RequestContext
from wakedock.errors import InvalidInput, NotFound, PermissionDenied
from wakedock.mfa.service import Challenge
from wakedock.rbac.dependencies import public, requires
from wakedock.rbac.permissions import Permission, Role
from wakedock.rbac.roles import SELF_REGISTRATION_ROLE, has_permission
from wakedock.users.schemas import UserOut
from wakedock.web.deps import components, db_transaction, request_context
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
    c: Components = Depends(components),
    context: RequestContext = Depends(request_context),
) -> TokenResponse | CookieLoginResponse | MfaChallengeResponse:
    """Password login (form or JSON). With MFA: a challenge, or one step with `code`."""
    body = await _login_body(request)
    if body.mode == "cookie":
        await refuse_cross_site_cookie_login(request, c, context)
    result = await run_hashing(
        request, c.auth.login, body.username, body.password, context, body.code
    )
    if isinstance(result, Challenge):
        return MfaChallengeResponse(challenge_token=result.token, expires_in=result.expires_in)
    return session_response(c, response, result, body.mode)


@router.post(
    "/refresh",
    response_model=TokenResponse,
    dependencies=[Depends(public)],
    responses=errors(401),
)
def refresh(
    body: RefreshRequest,
    c: Components = Depends(components),
    context: RequestContext = Depends(request_context),
) -> TokenResponse:
    tokens = c.auth.refresh(body.refresh_token, context)
    return TokenResponse(
        access_token=tokens.access_token,
        expires_in=c.codec.ttl_seconds,
        refresh_token=tokens.refresh_token,
        session_id=tokens.session_id,
        user=UserOut.model_validate(tokens.user),
    )


@router.post("/logout", status_code=204)
def logout(
    response: Response,
    principal: Principal = Depends(requires(Permission.ACCOUNT_WRITE, during_enrolment=True)),
    c: Components = Depends(components),
    context: RequestContext = Depends(request_context),
) -> Response:
    c.auth.logout(principal, context)
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
def csrf(request: Request, c: Components = Depends(components)) -> CsrfResponse:
    """The CSRF token of the current browser session (after a page reload)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise InvalidInput("only browser (cookie) sessions use a CSRF token")
    return CsrfResponse(csrf_token=csrf_token(c.keyring, cookie))


@router.post("/password", status_code=204, responses=errors(400, 429))
def change_password(
    body: PasswordChange,
    principal: Principal = Depends(requires(Permission.ACCOUNT_WRITE)),
    c: Components = Depends(components),
    context: RequestContext = Depends(request_context),
) -> Response:
    """Change one's own password; every other session of the user is revoked."""
    c.auth.change_password(principal, body.current_password, body.new_password, context)
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
    c: Components = Depends(components),
    db: Session = Depends(db_transaction),
    context: RequestContext = Depends(request_context),
) -> UserOut:
    """Self-registration (off by default): always the least-privileged role."""
    if not c.settings.auth.registration_enabled:
        raise RegistrationDisabled("self-registration is disabled")
    user = c.users.create(
        db,
        context,
        username=body.username,
        password=body.password,
        email=body.email,
        role=SELF_REGISTRATION_ROLE,
        event=EventType.REGISTRATION,
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
    c: Components = Depends(components),
    db: Session = Depends(db_transaction),
    context: RequestContext = Depends(request_context),
) -> UserOut:
    """Create the first admin with the one-time token printed at first start.

    A refused password leaves the token usable; it is spent only when the admin is created.
    """
    if c.auth.user_count() == 0 and c.setup.matches(body.token):
        c.users.check_password(body.password, body.username.lower(), body.email)
        if c.setup.consume(body.token):
            user = c.users.create(
                db,
                context,
                username=body.username,
                password=body.password,
                email=body.email,
                role=Role.ADMIN,
            )
            record_event(
                db, Event(EventType.SETUP_COMPLETE, target=user.username), context, at=c.clock.now()
            )
            return UserOut.model_validate(user)
    c.auth.audit(
        Event(
            EventType.SETUP_COMPLETE,
            Outcome.DENIED,
            details={"reason": "invalid, expired or already used"},
        ),
        context,
    )
    raise SetupUnavailable("setup token invalid, expired or already used")


def _session_out(row: Any, current: str) -> SessionOut:
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
    principal: Principal = Depends(requires(Permission.ACCOUNT_READ)),
    c: Components = Depends(components),
    db: Session = Depends(db_transaction),
    user_id: RowId | None = Query(default=None, description="another user's (sessions:read)"),
    all_users: bool = Query(default=False, alias="all", description="everyone's (sessions:read)"),
) -> list[SessionOut]:
    """Live sessions: one's own, or (with sessions:read) another user's or everyone's."""
    target: int | None = principal.user_id
    if all_users or (user_id is not None and user_id != principal.user_id):
        if not has_permission(principal.role, Permission.SESSIONS_READ):
            raise PermissionDenied("missing permission sessions:read")
        target = None if all_users else user_id
    rows = c.sessions.list_live(db, target)
    return [_session_out(row, principal.session_id) for row in rows]


@router.delete("/sessions/{session_id}", status_code=204)
def revoke_session(
    session_id: str,
    principal: Principal = Depends(requires(Permission.ACCOUNT_WRITE)),
    c: Components = Depends(components),
    db: Session = Depends(db_transaction),
    context: RequestContext = Depends(request_context),
) -> Response:
    """Revoke one session: one's own, or anyone's with sessions:revoke."""
    row = db.get(UserSession, session_id)
    mine = row is not None and row.user_id == principal.user_id
    if row is None or (not mine and not has_permission(principal.role, Permission.SESSIONS_REVOKE)):
        # Someone else's session looks exactly like a missing one.
        raise NotFound("no such session")
    owner = c.users.get(db, row.user_id)
    c.sessions.revoke(db, session_id, reason="revoked_by_user" if mine else "revoked_by_admin")
    record_event(
        db,
        Event(EventType.SESSION_REVOKE, target=owner.username, details={"session": session_id}),
        context,
        at=c.clock.now(),
    )
    return Response(status_code=204)
