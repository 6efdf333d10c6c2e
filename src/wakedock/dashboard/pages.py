"""The services page (`/` for a signed-in user, and `/services`), its live state, its buttons,
sign-out, and the pages' script.

Every button is a POST form with the session's CSRF token: it works without the script (answer:
303 back to the page); the script sends the same form with `fetch` and reads a JSON answer, so
the page stays in place. Nothing changes on a GET.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from wakedock.auth.dependencies import SESSION_COOKIE
from wakedock.auth.forms import (
    BrowserSession,
    browser_session,
    form_fields,
    refused_page,
    require_form_csrf,
    sign_in_first,
)
from wakedock.dashboard.board import STATE_FILTERS, Action, Board
from wakedock.dashboard.browser import Pages, PagesDep, permitted, service_port, signed_in
from wakedock.errors import CsrfFailed, NotAuthenticated, WakeDockError
from wakedock.login.deps import LoginFlowDep
from wakedock.rbac.dependencies import public
from wakedock.rbac.permissions import Permission
from wakedock.rbac.roles import has_permission
from wakedock.services.spec import DNS_LABEL
from wakedock.web.deps import context_of
from wakedock.web.templating import SCRIPT_PATH, message_page, render_page, script

router = APIRouter(tags=["pages"], include_in_schema=False)
SERVICES_PATH = "/services"
_SCRIPT = script()
_NOT_ALLOWED = "Your role may not do this."


def _wants_json(request: Request) -> bool:
    """The page's script asks for JSON; a plain form post (no script) gets a page."""
    return "application/json" in request.headers.get("accept", "")


@dataclass(frozen=True)
class _Narrowing:
    """The search, state filter and page of the list (the page's query, also its poll's)."""

    search: str = ""
    state: str = ""
    page: int = 1

    def query(self, page: int | None = None) -> str:
        """The query string of this narrowing (on another page if asked)."""
        values = {"q": self.search, "state": self.state, "page": page or self.page}
        return urlencode({k: v for k, v in values.items() if v not in ("", 1)})


def _narrowing(
    q: str = Query(default="", max_length=100),
    state: str = Query(default="", max_length=16),
    page: int = Query(default=1, ge=1, le=100_000),
) -> _Narrowing:
    return _Narrowing(q, state if state in STATE_FILTERS else "", page)


def _services_page(
    request: Request,
    pages: Pages,
    session: BrowserSession,
    board: Board,
    narrow: _Narrowing,
    saved: str = "",
) -> HTMLResponse:
    return render_page(
        "services.html",
        title="Services",
        section="services",
        user=session.principal.username,
        console=has_permission(session.principal.role, Permission.CONSOLE_READ),
        csrf_token=session.csrf_token(pages.csrf),
        board=board,
        scheme=request.url.scheme,
        port=service_port(request),
        narrow=narrow,
        states=STATE_FILTERS,
        # The create / edit form's redirect names the service saved (dashboard/form.py); only a
        # service's name is ever shown from it.
        saved=saved if DNS_LABEL.fullmatch(saved) else "",
    )


async def _show(
    request: Request, pages: Pages, here: str, narrow: _Narrowing, saved: str = ""
) -> Response:
    found = await signed_in(request, pages, here)
    if isinstance(found, Response):
        return found
    if not await permitted(request, pages, found.principal, Permission.SERVICES_READ):
        return message_page("Services", _NOT_ALLOWED, 403, link="/account", link_text="Account")
    board = await pages.board.board(found.principal, narrow.search, narrow.state, narrow.page)
    return _services_page(request, pages, found, board, narrow, saved)


@router.get("/", response_class=HTMLResponse, dependencies=[Depends(public)])
async def root(request: Request, pages: Pages = PagesDep) -> Response:
    """The services page for a signed-in user; the landing page (sign-in link) for others."""
    if request.cookies.get(SESSION_COOKIE):
        return await _show(request, pages, "/", _Narrowing())
    return render_page("root.html", title="WakeDock")


@router.get(SERVICES_PATH, response_class=HTMLResponse, dependencies=[Depends(public)])
async def services_page(
    request: Request,
    narrow: _Narrowing = Depends(_narrowing),
    saved: str = Query(default="", max_length=63),
    pages: Pages = PagesDep,
) -> Response:
    """Every service the user may see, searched by name and filtered by state, by pages
    (`saved`: the service the form just saved, to say so)."""
    return await _show(request, pages, SERVICES_PATH, narrow, saved)


@router.get(f"{SERVICES_PATH}/live", dependencies=[Depends(public)])
async def services_live(
    request: Request, narrow: _Narrowing = Depends(_narrowing), pages: Pages = PagesDep
) -> Response:
    """What the page's script refreshes (the rows of the same search, filter and page): each
    service's state, phase and timers, the count awake. 401 without a session (the script
    then sends the browser to sign in)."""
    found = await signed_in(request, pages, SERVICES_PATH)
    if not isinstance(found, BrowserSession):
        error = NotAuthenticated("Sign in again")
        return JSONResponse({"detail": error.detail, "code": error.code}, status_code=401)
    if not await permitted(request, pages, found.principal, Permission.SERVICES_READ):
        return JSONResponse({"detail": _NOT_ALLOWED, "code": "permission_denied"}, 403)
    board = await pages.board.board(found.principal, narrow.search, narrow.state, narrow.page)
    body = {
        "awake": board.awake,
        "max_awake": board.max_awake,
        "services": {row.name: row.live() for row in board.rows},
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


def _answer(
    request: Request,
    status: int,
    message: str,
    code: str = "ok",
    headers: dict[str, str] | None = None,
) -> Response:
    """JSON for the script; otherwise back to the list, or a page saying what went wrong.
    `headers`: the error's own (`Retry-After` of a refused wake)."""
    answer: Response
    if _wants_json(request):
        answer = JSONResponse({"detail": message, "code": code}, status_code=status)
    elif status < 400:
        return RedirectResponse(SERVICES_PATH, status_code=303)
    else:
        answer = message_page("Services", message, status, link=SERVICES_PATH, link_text="Back")
    answer.headers.update(headers or {})
    return answer


@router.post(f"{SERVICES_PATH}/{{name}}/{{action}}", dependencies=[Depends(public)])
async def service_action(
    request: Request,
    action: Action,
    name: str = Path(max_length=64),
    pages: Pages = PagesDep,
) -> Response:
    """Wake, stop or restart one service: `services:operate` and ownership, as the API's
    start and stop; the same audit events."""
    fields = await form_fields(request)
    session = await signed_in(request, pages, SERVICES_PATH)
    if not isinstance(session, BrowserSession):
        if _wants_json(request):
            return _answer(request, 401, "Sign in again.", "not_authenticated")
        return session  # to the sign-in form (or the enrolment page), as the other pages
    context = context_of(request)
    try:
        await require_form_csrf(request, pages.csrf, context, session, fields)
    except CsrfFailed as exc:
        if _wants_json(request):
            return _answer(request, 403, exc.detail, exc.code)
        return refused_page()
    if not await permitted(request, pages, session.principal, Permission.SERVICES_OPERATE):
        return _answer(request, 403, _NOT_ALLOWED, "permission_denied")
    try:
        message = await pages.board.act(session.principal, name, action, context)
    except WakeDockError as exc:
        return _answer(request, exc.status_code, exc.detail, exc.code, exc.headers())
    return _answer(request, 200, message)


@router.post("/logout", dependencies=[Depends(public)])
async def sign_out(request: Request, flow: LoginFlowDep, pages: Pages = PagesDep) -> Response:
    """End the browser's session (a POST form with the CSRF token), then the sign-in form."""
    fields = await form_fields(request)
    # Not `signed_in`: a user who must still enrol MFA may sign out too.
    session = await browser_session(request, pages.sessions)
    if session is None:
        return sign_in_first("/")
    context = context_of(request)
    try:
        await require_form_csrf(request, pages.csrf, context, session, fields)
    except CsrfFailed:
        return refused_page()
    await run_in_threadpool(flow.logout, session.principal, context)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


@router.get(SCRIPT_PATH, dependencies=[Depends(public)])
async def script_asset() -> Response:
    return Response(
        _SCRIPT,
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=3600"},
    )
