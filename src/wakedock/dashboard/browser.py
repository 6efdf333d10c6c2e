"""Who is looking at a dashboard page, and may they: the browser session, the MFA enrolment a
role demands, and the API's own route guard asked for a permission.

Dashboard routes are declared `public` because a browser without a session is sent to the
sign-in form (not answered 401 JSON), and because their form posts carry the CSRF token in a
field; the checks the API's guard makes are then made here, by that same guard
(`rbac.requires(P)`: refusal audited as `forbidden_access`).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import Depends, Request
from fastapi.responses import RedirectResponse, Response

from wakedock.auth.csrf import CsrfGuard
from wakedock.auth.deps import CsrfGuardDep, SessionStoreDep
from wakedock.auth.forms import (
    BrowserSession,
    FreshCodeOnPage,
    browser_session,
    enrolment_path,
    sign_in_first,
)
from wakedock.auth.sessions import Principal, SessionStore
from wakedock.auth.zerotrust import FreshCodeNeeded
from wakedock.dashboard.board import ServicesBoard
from wakedock.dashboard.deps import ServicesBoardDep
from wakedock.errors import PermissionDenied
from wakedock.rbac.dependencies import GuardContext, GuardContextDep, requires
from wakedock.rbac.permissions import Permission


@dataclass(frozen=True)
class Pages:
    """What the dashboard pages use: sessions, CSRF, the route guards' context, the board."""

    sessions: SessionStore
    csrf: CsrfGuard
    guard: GuardContext
    board: ServicesBoard


async def _pages(
    sessions: SessionStoreDep,
    csrf: CsrfGuardDep,
    guard: GuardContextDep,
    board: ServicesBoardDep,
) -> Pages:
    return Pages(sessions, csrf, guard, board)


PagesDep = Depends(_pages)


async def signed_in(request: Request, pages: Pages, here: str) -> BrowserSession | Response:
    """The live session, or where to send the browser first: the sign-in form (then back to
    `here`), or the enrolment page when the role must use MFA and the account has none."""
    session = await browser_session(request, pages.sessions)
    if session is None:
        return sign_in_first(here)
    if pages.guard.enrolment.enrolment_pending(session.principal):
        return RedirectResponse(enrolment_path(here), status_code=303)
    return session


async def permitted(
    request: Request, pages: Pages, principal: Principal, permission: Permission
) -> bool:
    """Whether the API's guard admits `principal` for `permission` (a refusal is audited).

    A page a browser opens that the zero-trust engine steps up raises `FreshCodeOnPage`: the
    browser is sent for a code, then back (a form post or a script's poll is refused)."""
    try:
        await requires(permission)(request, pages.guard, principal)
    except FreshCodeNeeded:
        if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            query = request.url.query
            raise FreshCodeOnPage(request.url.path + (f"?{query}" if query else "")) from None
        return False
    except PermissionDenied:
        return False
    return True


def service_port(request: Request) -> str:
    """`:<port>` the browser used here (none for the scheme's default): a service host answers
    on the same port as the admin host."""
    try:
        port = urlsplit(f"//{request.headers.get('host', '')}").port
    except ValueError:
        port = None
    return f":{port}" if port else ""
