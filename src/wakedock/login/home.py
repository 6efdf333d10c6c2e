"""The root page and the admin pages' stylesheet: no inline script or style anywhere."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, Response

from wakedock.rbac.dependencies import public
from wakedock.web.templating import STYLESHEET_PATH, render_page, stylesheet

router = APIRouter(tags=["pages"], include_in_schema=False)
_STYLESHEET = stylesheet()


@router.get("/", response_class=HTMLResponse, dependencies=[Depends(public)])
async def root() -> HTMLResponse:
    return render_page("root.html", title="WakeDock")


@router.get(STYLESHEET_PATH, dependencies=[Depends(public)])
async def stylesheet_asset() -> Response:
    return Response(
        _STYLESHEET,
        media_type="text/css",
        headers={"Cache-Control": "public, max-age=3600"},
    )
