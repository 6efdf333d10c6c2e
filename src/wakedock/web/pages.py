"""The root page: says what is running, with no inline script or style."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from wakedock.rbac.dependencies import public

router = APIRouter(tags=["pages"])

_ROOT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>WakeDock</title></head>
<body><h1>WakeDock</h1>
<p>This WakeDock server is running. The API lives under <code>/api/v1</code>.</p>
</body></html>
"""


@router.get(
    "/", response_class=HTMLResponse, include_in_schema=False, dependencies=[Depends(public)]
)
async def root() -> HTMLResponse:
    return HTMLResponse(_ROOT)
