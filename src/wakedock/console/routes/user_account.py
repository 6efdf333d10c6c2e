"""`/admin/users/{name}`: one account, and its changes: role, disable / enable, reset MFA,
delete. Each is a POST form with the session's CSRF token and a code field (the API demands a
fresh MFA proof for each), made by the API's own service calls (console/user_desk.py): the
same rules, self- and last-admin protection, and audit events. A refusal is shown on the page,
in the service's words.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from wakedock.auth.forms import BrowserSession, form_fields
from wakedock.auth.sessions import Principal
from wakedock.console.access import console_session
from wakedock.console.roster import account
from wakedock.console.user_desk import UserDesk
from wakedock.console.user_forms import ROLES, USERS_PATH, DeskDep, admitted, notice, user_path
from wakedock.context import RequestContext
from wakedock.dashboard.browser import Pages, PagesDep
from wakedock.db import transaction
from wakedock.errors import InvalidInput, NotFound, WakeDockError
from wakedock.rbac.dependencies import public
from wakedock.rbac.permissions import Permission, Role
from wakedock.web.deps import context_of
from wakedock.web.templating import message_page, render_page

router = APIRouter(tags=["pages"], include_in_schema=False)
_NAME = Path(max_length=64)
# A change: what the desk does with the form, and what the page says after it.
Change = Callable[[UserDesk, Principal, RequestContext, int, dict[str, str]], str]


def _role(fields: dict[str, str]) -> Role:
    try:
        return Role(fields.get("role", ""))
    except ValueError:
        raise InvalidInput(f"the role must be one of: {', '.join(ROLES)}") from None


CHANGES: dict[str, tuple[Change, str]] = {
    "role": (lambda d, p, c, i, f: d.change_role(p, c, i, _role(f), f.get("code", "")), "role"),
    "disable": (lambda d, p, c, i, f: d.set_disabled(p, c, i, True, f.get("code", "")), "disabled"),
    "enable": (lambda d, p, c, i, f: d.set_disabled(p, c, i, False, f.get("code", "")), "enabled"),
    "reset-mfa": (lambda d, p, c, i, f: d.reset_mfa(p, c, i, f.get("code", "")), "mfa"),
    "delete": (lambda d, p, c, i, f: d.delete(p, c, i, f.get("code", "")), "deleted"),
}


def _account_page(
    pages: Pages,
    session: BrowserSession,
    desk: UserDesk,
    name: str,
    *,
    said: str = "",
    failed: str = "",
    action: str = "",
    status: int = 200,
) -> HTMLResponse:
    """The page of `name`; `failed`: why `action` was refused (shown beside its form)."""
    with transaction(desk.factory) as db:
        try:
            found = account(db, desk.users.by_username(db, name).id)
        except NotFound:
            found = None
    if found is None:
        return message_page("Users and roles", "No such user.", 404, USERS_PATH, "Users")
    return render_page(
        "console_user.html",
        status,
        title=f"User {found.username}",
        section="admin",
        user=session.principal.username,
        console=True,
        csrf_token=session.csrf_token(pages.csrf),
        account=found,
        yourself=found.id == session.principal.user_id,
        roles=ROLES,
        notice=said,
        failed=failed,
        action=action,
    )


@router.get(f"{USERS_PATH}/{{name}}", response_class=HTMLResponse, dependencies=[Depends(public)])
async def account_page(
    request: Request,
    name: str = _NAME,
    done: str = Query(default="", max_length=16),
    pages: Pages = PagesDep,
    desk: UserDesk = DeskDep,
) -> Response:
    """One account and the forms that change it (`users:read`)."""
    here = user_path(name)
    found = await console_session(request, pages, here, Permission.USERS_READ)
    if isinstance(found, Response):
        return found
    said = notice(done, name)
    return await run_in_threadpool(_account_page, pages, found, desk, name, said=said)


def _user_id(desk: UserDesk, name: str) -> int:
    with transaction(desk.factory) as db:
        return desk.users.by_username(db, name).id


@router.post(f"{USERS_PATH}/{{name}}/{{action}}", dependencies=[Depends(public)])
async def change_account(
    request: Request,
    name: str = _NAME,
    action: str = Path(max_length=16),
    pages: Pages = PagesDep,
    desk: UserDesk = DeskDep,
) -> Response:
    """Change one account as the API's route would (`users:write`, a fresh MFA code)."""
    fields = await form_fields(request)
    here = user_path(name)
    session = await admitted(request, pages, here, fields)
    if isinstance(session, Response):
        return session
    if action not in CHANGES:
        return message_page("Users and roles", "No such change.", 404, here, "Back")
    change, done = CHANGES[action]
    context = context_of(request)
    try:
        user_id = await run_in_threadpool(_user_id, desk, name)
        changed = await run_in_threadpool(change, desk, session.principal, context, user_id, fields)
    except WakeDockError as exc:
        failed, status = exc.detail, exc.status_code
        return await run_in_threadpool(
            lambda: _account_page(
                pages, session, desk, name, failed=failed, action=action, status=status
            )
        )
    if action == "delete":
        return RedirectResponse(f"{USERS_PATH}?done={done}&user={changed}", status_code=303)
    return RedirectResponse(f"{user_path(changed)}?done={done}", status_code=303)
