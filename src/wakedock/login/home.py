"""The admin pages' stylesheet: no inline style anywhere. (The root page is the dashboard's.)"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from wakedock.rbac.dependencies import public
from wakedock.web.templating import STYLESHEET_PATH, stylesheet

router = APIRouter(tags=["pages"], include_in_schema=False)
_STYLESHEET = stylesheet()


@router.get(STYLESHEET_PATH, dependencies=[Depends(public)])
async def stylesheet_asset() -> Response:
    return Response(
        _STYLESHEET,
        media_type="text/css",
        headers={"Cache-Control": "public, max-age=3600"},
    )
