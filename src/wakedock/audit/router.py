"""/api/v1/audit: query the audit trail (filters, cursor pages) and export it (S8)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from wakedock.audit.deps import AuditorDep, SessionFactoryDep
from wakedock.audit.events import Event, EventType
from wakedock.audit.export import AuditFilter, export_events, page_events
from wakedock.context import RequestContext
from wakedock.errors import InvalidInput
from wakedock.rbac.dependencies import requires
from wakedock.rbac.permissions import Permission
from wakedock.web.deps import request_context
from wakedock.web.openapi import errors
from wakedock.web.params import Offset

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])
_READ = Depends(requires(Permission.AUDIT_READ))
_NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
EXPORT_PAGE = 5_000


def _filter(
    type: str | None = Query(default=None, max_length=64),
    severity: str | None = Query(default=None, max_length=16),
    actor: str | None = Query(default=None, max_length=128, pattern=_NO_CONTROL),
    ip: str | None = Query(default=None, max_length=45, pattern=_NO_CONTROL),
    target: str | None = Query(default=None, max_length=256, pattern=_NO_CONTROL),
    since: str | None = Query(default=None, max_length=40),
    until: str | None = Query(default=None, max_length=40),
) -> AuditFilter:
    try:
        return AuditFilter.parse(
            type=type,
            severity=severity,
            actor=actor,
            ip=ip,
            target=target,
            since=since,
            until=until,
        )
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


@router.get("", dependencies=[_READ], responses=errors(400))
def list_events(
    selection: AuditFilter = Depends(_filter),
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
    selection: AuditFilter = Depends(_filter),
    format: str = Query(default="jsonl", pattern="^(jsonl|csv)$"),
    *,
    factory: SessionFactoryDep,
    auditor: AuditorDep,
    context: RequestContext = Depends(request_context),
) -> StreamingResponse:
    """Every matching event, oldest first, streamed as JSON lines or CSV. The export is audited."""
    event = Event(EventType.AUDIT_EXPORT, details={"format": format, **_described(selection)})
    await run_in_threadpool(auditor.record, event, context)

    def chunks() -> Iterator[str]:
        cursor, first = None, True
        while True:
            events = page_events(factory, selection, limit=EXPORT_PAGE, after=cursor)
            if not events:
                return
            buffer = io.StringIO()
            export_events(events, format, buffer, header=first)
            yield buffer.getvalue()
            cursor, first = events[-1].seq, False

    media = "application/x-ndjson" if format == "jsonl" else "text/csv; charset=utf-8"
    return StreamingResponse(
        chunks(),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="wakedock-audit.{format}"'},
    )


def _described(selection: AuditFilter) -> dict[str, str]:
    return {k: str(v) for k, v in selection.__dict__.items() if v is not None}
