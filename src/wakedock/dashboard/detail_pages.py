"""A service's page (`/services/{name}`), the part of it the script refreshes, its log tail,
and the page's script.

Permissions are the API's: reading needs `services:read` (every role has it; a refusal is
audited by the API's guard, as on the services page), the log tail `services:operate` and the
ownership rule of `GET /api/v1/services/{id}/logs`, the audit events `audit:read`. An unknown
service is 404. Nothing here changes anything: the page's buttons post to the services page's
routes (`POST /services/{name}/wake|stop|restart`).

Included last in the app: `/services/{name}` must not shadow a fixed path of the services pages
(`/services/live`, a form's `/services/new`).
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from wakedock.auth.forms import BrowserSession
from wakedock.dashboard.browser import Pages, PagesDep, permitted, service_port, signed_in
from wakedock.dashboard.deps import ServiceDetailsDep
from wakedock.errors import NotAuthenticated, NotFound, WakeDockError
from wakedock.rbac.dependencies import public
from wakedock.rbac.permissions import Permission
from wakedock.rbac.roles import has_permission
from wakedock.web.templating import integrity, message_page, render_page

router = APIRouter(tags=["pages"], include_in_schema=False)
DETAIL_SCRIPT_PATH = "/assets/service-detail.js"
_SCRIPT = files("wakedock.web").joinpath("static/service-detail.js").read_bytes()
_SCRIPT_INTEGRITY = integrity(_SCRIPT)
_NOT_ALLOWED = "Your role may not do this."
_NO_SUCH = "There is no such service."
_Name = Path(max_length=64)


def _error(status: int, detail: str, code: str) -> JSONResponse:
    return JSONResponse({"detail": detail, "code": code}, status_code=status)


@router.get("/services/{name}", response_class=HTMLResponse, dependencies=[Depends(public)])
async def service_page(
    request: Request,
    details: ServiceDetailsDep,
    name: str = _Name,
    audit_before: int | None = Query(default=None, ge=1, le=2**62),
    pages: Pages = PagesDep,
) -> Response:
    """One service: spec, hardening, CIS checks, charts, log tail, audit events, secrets."""
    here = f"/services/{name}"
    found = await signed_in(request, pages, here)
    if isinstance(found, Response):
        return found
    if not await permitted(request, pages, found.principal, Permission.SERVICES_READ):
        return message_page("Services", _NOT_ALLOWED, 403, link="/account", link_text="Account")
    try:
        detail = await details.page(found.principal, name, audit_before)
    except NotFound:
        return message_page("Services", _NO_SUCH, 404, link="/services", link_text="Services")
    return render_page(
        "service_detail.html",
        title=detail.title,
        section="services",
        user=found.principal.username,
        console=has_permission(found.principal.role, Permission.CONSOLE_READ),
        csrf_token=found.csrf_token(pages.csrf),
        detail=detail,
        live=detail.live,
        scheme=request.url.scheme,
        port=service_port(request),
        detail_script=DETAIL_SCRIPT_PATH,
        detail_integrity=_SCRIPT_INTEGRITY,
    )


@router.get("/services/{name}/live", response_class=HTMLResponse, dependencies=[Depends(public)])
async def service_live(
    request: Request, details: ServiceDetailsDep, name: str = _Name, pages: Pages = PagesDep
) -> Response:
    """The refreshed part of the page (state, phase, timers, charts) as an HTML fragment; a
    CPU and memory sample is taken first when one is due. 401 without a session."""
    found = await signed_in(request, pages, f"/services/{name}")
    if not isinstance(found, BrowserSession):
        return _error(401, NotAuthenticated("Sign in again").detail, "not_authenticated")
    if not await permitted(request, pages, found.principal, Permission.SERVICES_READ):
        return _error(403, _NOT_ALLOWED, "permission_denied")
    try:
        view = await details.view(name)
    except NotFound:
        return _error(404, _NO_SUCH, "service_not_found")
    return render_page("service_live.html", live=await details.live(view))


@router.get("/services/{name}/logs", dependencies=[Depends(public)])
async def service_logs(
    request: Request, details: ServiceDetailsDep, name: str = _Name, pages: Pages = PagesDep
) -> Response:
    """The log tail as JSON lines (`{"lines": [...]}`, at most LOG_LINES, each cut): the
    API's `GET /api/v1/services/{id}/logs` rule, `services:operate` and ownership."""
    found = await signed_in(request, pages, f"/services/{name}")
    if not isinstance(found, BrowserSession):
        return _error(401, NotAuthenticated("Sign in again").detail, "not_authenticated")
    if not await permitted(request, pages, found.principal, Permission.SERVICES_OPERATE):
        return _error(403, _NOT_ALLOWED, "permission_denied")
    try:
        lines = await details.log_tail(found.principal, name)
    except WakeDockError as exc:
        return _error(exc.status_code, exc.detail, exc.code)
    return JSONResponse({"lines": lines}, headers={"Cache-Control": "no-store"})


@router.get(DETAIL_SCRIPT_PATH, dependencies=[Depends(public)])
async def detail_script() -> Response:
    return Response(
        _SCRIPT, media_type="text/javascript", headers={"Cache-Control": "public, max-age=3600"}
    )
