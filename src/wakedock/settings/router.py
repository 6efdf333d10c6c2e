"""/api/v1/settings: the effective configuration, read-only, without secrets (settings:read)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool

from wakedock.context import RequestContext
from wakedock.rbac.dependencies import requires
from wakedock.rbac.permissions import Permission
from wakedock.settings.deps import EffectiveSettingsDep
from wakedock.web.deps import request_context

router = APIRouter(prefix="/api/v1/settings", tags=["settings"])


@router.get("", dependencies=[Depends(requires(Permission.SETTINGS_READ))])
async def read_settings(
    settings: EffectiveSettingsDep, context: RequestContext = Depends(request_context)
) -> dict[str, Any]:
    """Every setting in force; each secret only as its source (file, env, yaml, reference...).

    The read is audited: the configuration maps the installation's defences."""
    return await run_in_threadpool(settings.read, context)
