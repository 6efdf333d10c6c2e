"""`/admin/users`: the accounts (searched, filtered, by pages of 50), a form to create one, the
matrix of roles and permissions (one account's page: routes/user_account.py).

The form is posted with the session's CSRF token, from this origin, by an admin
(`console:read`, `users:read`, `users:write`), and goes through the API's own service calls
(console/user_desk.py), so it is refused and audited exactly as through the API.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from wakedock.auth.forms import BrowserSession, form_fields
from wakedock.console.access import console_session
from wakedock.console.roster import RECENT_DAYS, Narrowing, role_matrix, roster
from wakedock.console.user_desk import UserDesk
from wakedock.console.user_forms import ROLES, USERS_PATH, DeskDep, admitted, notice
from wakedock.dashboard.browser import Pages, PagesDep
from wakedock.db import transaction
from wakedock.errors import Conflict, InvalidInput, WakeDockError
from wakedock.mfa.errors import MfaCodeRejected, StepUpRequired
from wakedock.rbac.dependencies import public
from wakedock.rbac.permissions import Permission, Role
from wakedock.users.schemas import UserCreate
from wakedock.users.service import PasswordRejected
from wakedock.web.deps import context_of
from wakedock.web.templating import render_page

router = APIRouter(tags=["pages"], include_in_schema=False)
_CREATE_FIELDS = ("username", "email", "password", "role", "code")


def _narrowing(
    q: str = Query(default="", max_length=128),
    role: str = Query(default="", max_length=16),
    disabled: str = Query(default="", max_length=3),
    mfa: str = Query(default="", max_length=3),
    page: int = Query(default=1, ge=1, le=100_000),
    signed_in: str = Query(default="", max_length=8),
) -> Narrowing:
    return Narrowing.of(q, role, disabled, mfa, page, signed_in)


def _list_page(
    pages: Pages,
    session: BrowserSession,
    desk: UserDesk,
    narrow: Narrowing,
    *,
    said: str = "",
    values: dict[str, str] | None = None,
    problems: dict[str, list[str]] | None = None,
    status: int = 200,
) -> HTMLResponse:
    with transaction(desk.factory) as db:
        found = roster(db, narrow, desk.clock.now())
    return render_page(
        "console_users.html",
        status,
        title="Users and roles",
        section="admin",
        user=session.principal.username,
        console=True,
        csrf_token=session.csrf_token(pages.csrf),
        roster=found,
        narrow=narrow,
        recent_days=RECENT_DAYS,
        roles=ROLES,
        matrix=role_matrix(),
        notice=said,
        values=values or {"role": Role.VIEWER.value},
        problems=problems or {},
    )


@router.get(USERS_PATH, response_class=HTMLResponse, dependencies=[Depends(public)])
async def users_page(
    request: Request,
    narrow: Narrowing = Depends(_narrowing),
    done: str = Query(default="", max_length=16),
    user: str = Query(default="", max_length=64),
    pages: Pages = PagesDep,
    desk: UserDesk = DeskDep,
) -> Response:
    """The accounts, the create form, the role matrix (`users:read`)."""
    found = await console_session(request, pages, USERS_PATH, Permission.USERS_READ)
    if isinstance(found, Response):
        return found
    return await run_in_threadpool(_list_page, pages, found, desk, narrow, said=notice(done, user))


def _create_problems(exc: Exception) -> dict[str, list[str]]:
    """What went wrong, by the field it concerns (`_top`: the form as a whole)."""
    problems: dict[str, list[str]] = {}
    if isinstance(exc, ValidationError):
        for error in exc.errors():
            where = str(error["loc"][0]) if error["loc"] else "_top"
            field = where if where in _CREATE_FIELDS else "_top"
            message = {
                "username": "2-64 characters: letters, digits, '.', '_', '-'.",
                "role": f"One of: {', '.join(ROLES)}.",
                "email": "Not an e-mail address.",
            }.get(field, str(error["msg"]))
            problems.setdefault(field, []).append(message)
    elif isinstance(exc, PasswordRejected):
        reasons = (exc.extra or {}).get("reasons") or [exc.detail]
        problems["password"] = [str(reason) for reason in reasons]
    elif isinstance(exc, (MfaCodeRejected, StepUpRequired)):
        problems["code"] = [exc.detail]
    elif isinstance(exc, Conflict) or (
        isinstance(exc, InvalidInput) and exc.detail.startswith("username")
    ):
        problems["username"] = [exc.detail]
    elif isinstance(exc, WakeDockError):
        problems["_top"] = [exc.detail]
    return problems


@router.post(USERS_PATH, dependencies=[Depends(public)])
async def create_user(
    request: Request, pages: Pages = PagesDep, desk: UserDesk = DeskDep
) -> Response:
    """`POST /api/v1/users` from the form: every problem beside its field, what was typed
    kept (never the password or the code)."""
    fields = await form_fields(request)
    session = await admitted(request, pages, USERS_PATH, fields)
    if isinstance(session, Response):
        return session
    values = {k: fields.get(k, "") for k in ("username", "email", "role")}
    context = context_of(request)
    try:
        body = UserCreate.model_validate(
            {
                "username": values["username"],
                "password": fields.get("password", ""),
                "role": values["role"],
                "email": values["email"].strip() or None,
            }
        )
        await run_in_threadpool(desk.check_password, body.password, body.username, body.email)
        name = await run_in_threadpool(
            lambda: desk.create(
                session.principal,
                context,
                username=body.username,
                password=body.password,
                role=body.role,
                email=body.email,
                code=fields.get("code", ""),
            )
        )
    except (ValidationError, WakeDockError) as exc:
        status = exc.status_code if isinstance(exc, WakeDockError) else 422
        return await run_in_threadpool(
            _list_page,
            pages,
            session,
            desk,
            Narrowing(),
            values=values,
            problems=_create_problems(exc),
            status=status,
        )
    return RedirectResponse(f"{USERS_PATH}?done=created&user={name}", status_code=303)
