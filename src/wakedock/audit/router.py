"""/api/v1/audit: query the audit trail (filters, cursor pages) and export it (S8)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from wakedock.audit.deps import AuditorDep, SessionFactoryDep, audit_filter
from wakedock.audit.download import export_download
from wakedock.audit.export import AuditFilter, page_events
from wakedock.context import RequestContext
from wakedock.rbac.dependencies import requires
from wakedock.rbac.permissions import Permission
from wakedock.web.deps import request_context
from wakedock.web.openapi import errors
from wakedock.web.params import Offset

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])
_READ = Depends(requires(Permission.AUDIT_READ))


@router.get("", dependencies=[_READ], responses=errors(400))
def list_events(
    selection: AuditFilter = Depends(audit_filter),
    limit: int = Query(default=100, ge=1, le=1000),
    cursor: Offset | None = None,
    order: str = Query(default="desc", pattern="^(asc|desc)$"),
    *,
    factory: SessionFactoryDep,
) -> dict[str, Any]:
    """A page of events. Pass `next_cursor` back as `cursor` for the next page."""
    newest_first = order == "desc"
    events = page_events(factory, selection, limit=limit, after=cursor, newest_first=newest_first)
    return {
        "events": [event.__dict__ for event in events],
        "next_cursor": events[-1].seq if len(events) == limit else None,
    }


@router.get(
    "/export",
    dependencies=[_READ],
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Every matching event, oldest first",
            "content": {
                "application/x-ndjson": {"schema": {"type": "string"}},
                "text/csv": {"schema": {"type": "string"}},
            },
        },
        **errors(400),
    },
)
async def export(
    selection: AuditFilter = Depends(audit_filter),
    format: str = Query(default="jsonl", pattern="^(jsonl|csv)$"),
    *,
    factory: SessionFactoryDep,
    auditor: AuditorDep,
    context: RequestContext = Depends(request_context),
) -> StreamingResponse:
    """Every matching event, oldest first, streamed as JSON lines or CSV. The export is audited."""
    return await export_download(factory, auditor, context, selection, format)
