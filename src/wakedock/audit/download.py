"""An export of the audit trail as a download: every event a filter selects, oldest first, as
JSON lines or CSV, audited (`audit_export`). The API's `GET /api/v1/audit/export` and the admin
console's export link are both this one."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from datetime import datetime

from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.events import Event, EventType
from wakedock.audit.export import AuditFilter, export_events, page_events
from wakedock.audit.service import Auditor
from wakedock.context import RequestContext

EXPORT_PAGE = 5_000
_UNSAFE = re.compile(r"[^A-Za-z0-9._]+")
_MAX_NAME = 150


def described(selection: AuditFilter) -> dict[str, str]:
    """The filter's set fields, as text (the export event's details)."""
    return {k: str(v) for k, v in selection.__dict__.items() if v is not None}


def export_filename(selection: AuditFilter, fmt: str) -> str:
    """`wakedock-audit.<fmt>` for the whole trail; a filtered export names its filters
    (`wakedock-audit-filtered-actor-alice-type-login_failure.csv`), in safe characters only."""
    parts = []
    for name, value in selection.__dict__.items():
        if value is None:
            continue
        text = value.strftime("%Y%m%dT%H%M%SZ") if isinstance(value, datetime) else str(value)
        parts.append(f"{name}-{_UNSAFE.sub('_', text).strip('_') or '_'}")
    stem = "wakedock-audit" + ("-filtered-" + "-".join(parts) if parts else "")
    return f"{stem[:_MAX_NAME]}.{fmt}"


def _chunks(factory: sessionmaker[Session], selection: AuditFilter, fmt: str) -> Iterator[str]:
    cursor, first = None, True
    while True:
        events = page_events(factory, selection, limit=EXPORT_PAGE, after=cursor)
        if not events:
            return
        buffer = io.StringIO()
        export_events(events, fmt, buffer, header=first)
        yield buffer.getvalue()
        cursor, first = events[-1].seq, False


async def export_download(
    factory: sessionmaker[Session],
    auditor: Auditor,
    context: RequestContext,
    selection: AuditFilter,
    fmt: str,
) -> StreamingResponse:
    """The download of every event `selection` picks; the export is audited first."""
    event = Event(EventType.AUDIT_EXPORT, details={"format": fmt, **described(selection)})
    await run_in_threadpool(auditor.record, event, context)
    media = "application/x-ndjson" if fmt == "jsonl" else "text/csv; charset=utf-8"
    filename = export_filename(selection, fmt)
    return StreamingResponse(
        _chunks(factory, selection, fmt),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
