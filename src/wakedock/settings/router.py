"""/api/v1/settings: the effective configuration, read-only, without secrets (settings:read)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool

from wakedock.audit.events import Event, EventType
from wakedock.components import Components
from wakedock.context import RequestContext
from wakedock.rbac.dependencies import requires
from wakedock.rbac.permissions import Permission
from wakedock.settings.service import effective_settings
from wakedock.web.deps import components, request_context

router = APIRouter(prefix="/api/v1/settings", tags=["settings"])


@router.get("", dependencies=[Depends(requires(Permission.SETTINGS_READ))])
async def read_settings(
    c: Components = Depends(components), context: RequestContext = Depends(request_context)
) -> dict[str, Any]:
    """Every setting in force; each secret only as its source (file, env, yaml, reference...).

    The read is audited: the configuration maps the installation's defences."""
    read = Event(EventType.DATA_ACCESS, target="configuration", details={"what": "settings"})
    await run_in_threadpool(c.auditor.record, read, context)
    return effective_settings(c.settings, c.secret_sources)
