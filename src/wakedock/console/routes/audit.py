"""`/admin/audit`: the audit trail in the console: filters, cursor pages, a live tail, the
export of exactly the filtered view, an event's detail, and the chain's state with "verify now".

Reading needs `audit:read` (the API's `GET /api/v1/audit`) besides `console:read`. The API has no
verify route; the check reads the trail and changes nothing, so it asks for `audit:read` too
(the CLI's `wakedock audit verify` runs with the database's own access). Filters, paging and
export are the API's own code (audit/export.py, audit/download.py); the check is the CLI's walk
(audit/verify.py) run by audit/checks.py.
"""

from __future__ import annotations

from dataclasses import replace
from importlib.resources import files
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse, Response

from wakedock.audit.deps import (
    FILTER_FIELDS,
    ChainChecksDep,
    SessionFactoryDep,
    auditor,
    filter_fields,
)
from wakedock.audit.download import export_download
from wakedock.audit.events import EventType, Severity
from wakedock.audit.export import AuditFilter, page_events
from wakedock.audit.service import Auditor
from wakedock.auth.forms import BrowserSession, form_fields, refused_page, require_form_csrf
from wakedock.console.access import console_session
from wakedock.dashboard.browser import Pages, PagesDep
from wakedock.errors import CsrfFailed
from wakedock.rbac.dependencies import public
from wakedock.rbac.permissions import Permission
from wakedock.web.deps import context_of
from wakedock.web.templating import integrity, message_page, render_page

router = APIRouter(tags=["pages"], include_in_schema=False)
AUDIT_PATH = "/admin/audit"
AUDIT_SCRIPT_PATH = "/assets/console-audit.js"
PAGE_SIZE = 50
TAIL_SIZE = 100
_SCRIPT = files("wakedock.web").joinpath("static/console-audit.js").read_bytes()
_SCRIPT_INTEGRITY = integrity(_SCRIPT)
_Fields = dict[str, str | None]


def _sent(raw: _Fields) -> dict[str, str]:
    """The filter fields a person filled in (an empty form field filters nothing)."""
    return {k: v.strip() for k, v in raw.items() if v is not None and v.strip()}


def _selection(sent: dict[str, str]) -> AuditFilter | str:
    """The validated filter, or the message naming the bad field."""
    try:
        return AuditFilter.parse(**sent)
    except ValueError as exc:
        return str(exc)


def _link(path: str, sent: dict[str, str], **more: object) -> str:
    query = urlencode({**sent, **{k: v for k, v in more.items() if v is not None}})
    return f"{path}?{query}" if query else path


def _json_error(status: int, detail: str, code: str) -> JSONResponse:
    return JSONResponse({"detail": detail, "code": code}, status_code=status)


@router.get(AUDIT_PATH, dependencies=[Depends(public)])
async def audit_page(
    request: Request,
    checks: ChainChecksDep,
    factory: SessionFactoryDep,
    raw: _Fields = Depends(filter_fields),
    before: int | None = Query(default=None, ge=0, le=2**62),
    through: int | None = Query(default=None, ge=0, le=2**62),
    pages: Pages = PagesDep,
) -> Response:
    """A page of events (newest first) matching the filters, and the chain's state."""
    found = await console_session(request, pages, AUDIT_PATH, Permission.AUDIT_READ)
    if isinstance(found, Response):
        return found
    sent = _sent(raw)
    selection = _selection(sent)
    # The head first: the view, its pages and its export then hold events up to it, no later.
    state = await run_in_threadpool(checks.state)
    through = state.head_seq if through is None else min(through, state.head_seq)
    events = []
    if isinstance(selection, AuditFilter):
        view = replace(selection, through=through)
        events = await run_in_threadpool(
            page_events, factory, view, limit=PAGE_SIZE, after=before, newest_first=True
        )
    older = events[-1].seq if len(events) == PAGE_SIZE else None
    return render_page(
        "console_audit.html",
        status=200 if isinstance(selection, AuditFilter) else 400,
        title="Audit trail",
        section="admin",
        user=found.principal.username,
        console=True,
        csrf_token=found.csrf_token(pages.csrf),
        sent=sent,
        form={name: sent.get(name, "") for name in FILTER_FIELDS},
        error=None if isinstance(selection, AuditFilter) else selection,
        types=list(EventType),
        severities=list(Severity),
        events=events,
        first_page=before is None,
        through=through,
        older=_link(AUDIT_PATH, sent, before=older, through=through) if older else None,
        newest=_link(AUDIT_PATH, sent),
        live=_link(f"{AUDIT_PATH}/live", sent),
        exports={
            f: _link(f"{AUDIT_PATH}/export", sent, format=f, through=through)
            for f in ("jsonl", "csv")
        },
        state=state,
        audit_script=AUDIT_SCRIPT_PATH,
        audit_integrity=_SCRIPT_INTEGRITY,
    )


@router.get(f"{AUDIT_PATH}/live", dependencies=[Depends(public)])
async def audit_live(
    request: Request,
    factory: SessionFactoryDep,
    raw: _Fields = Depends(filter_fields),
    after: int = Query(ge=0, le=2**62),
    pages: Pages = PagesDep,
) -> Response:
    """The tail: rows (an HTML fragment, newest first) of matching events after seq `after`."""
    found = await console_session(request, pages, AUDIT_PATH, Permission.AUDIT_READ)
    if not isinstance(found, BrowserSession):
        if found.status_code == 403:
            return _json_error(403, "Only administrators may open the admin console.", "forbidden")
        return _json_error(401, "Sign in again.", "not_authenticated")
    selection = _selection(_sent(raw))
    if not isinstance(selection, AuditFilter):
        return _json_error(400, selection, "invalid_input")
    events = await run_in_threadpool(page_events, factory, selection, limit=TAIL_SIZE, after=after)
    newest = events[-1].seq if events else after
    return render_page("console_audit_tail.html", events=events[::-1], newest=newest)


@router.get(f"{AUDIT_PATH}/chain", dependencies=[Depends(public)])
async def audit_chain(
    request: Request, checks: ChainChecksDep, pages: Pages = PagesDep
) -> Response:
    """The chain's state as an HTML fragment: the script polls it while a check runs."""
    found = await console_session(request, pages, AUDIT_PATH, Permission.AUDIT_READ)
    if not isinstance(found, BrowserSession):
        if found.status_code == 403:
            return _json_error(403, "Only administrators may open the admin console.", "forbidden")
        return _json_error(401, "Sign in again.", "not_authenticated")
    state = await run_in_threadpool(checks.state)
    return render_page(
        "console_audit_chain.html", state=state, csrf_token=found.csrf_token(pages.csrf)
    )


@router.post(f"{AUDIT_PATH}/verify", dependencies=[Depends(public)])
async def audit_verify(
    request: Request, checks: ChainChecksDep, pages: Pages = PagesDep
) -> Response:
    """Start the chain's check in the background (one at a time), then back to the page."""
    fields = await form_fields(request)
    found = await console_session(request, pages, AUDIT_PATH, Permission.AUDIT_READ)
    if isinstance(found, Response):
        return found
    context = context_of(request)
    try:
        await require_form_csrf(request, pages.csrf, context, found, fields)
    except CsrfFailed:
        return refused_page()
    await run_in_threadpool(checks.start, context)
    return RedirectResponse(f"{AUDIT_PATH}#chain", status_code=303)


@router.get(f"{AUDIT_PATH}/export", dependencies=[Depends(public)])
async def audit_export(
    request: Request,
    factory: SessionFactoryDep,
    raw: _Fields = Depends(filter_fields),
    format: str = Query(default="jsonl", pattern="^(jsonl|csv)$"),
    through: int | None = Query(default=None, ge=0, le=2**62),
    pages: Pages = PagesDep,
    audit: Auditor = Depends(auditor),
) -> Response:
    """Exactly the filtered view (every page of it, up to its newest event), as the API's
    export: the same file and the same `audit_export` event."""
    found = await console_session(request, pages, AUDIT_PATH, Permission.AUDIT_READ)
    if isinstance(found, Response):
        return found
    selection = _selection(_sent(raw))
    if not isinstance(selection, AuditFilter):
        return message_page("Audit trail", selection, 400, link=AUDIT_PATH, link_text="Back")
    if through is not None:
        selection = replace(selection, through=through)
    return await export_download(factory, audit, context_of(request), selection, format)


@router.get(f"{AUDIT_PATH}/{{seq}}", dependencies=[Depends(public)])
async def audit_event(
    request: Request,
    factory: SessionFactoryDep,
    seq: int = Path(ge=1, le=2**62),
    pages: Pages = PagesDep,
) -> Response:
    """One event, every field of it."""
    found = await console_session(request, pages, f"{AUDIT_PATH}/{seq}", Permission.AUDIT_READ)
    if isinstance(found, Response):
        return found
    # The API's cursor read: the first event after seq - 1 is this one, if it exists.
    events = await run_in_threadpool(page_events, factory, AuditFilter(), limit=1, after=seq - 1)
    if not events or events[0].seq != seq:
        return message_page("Audit trail", "There is no such event.", 404, link=AUDIT_PATH)
    return render_page(
        "console_audit_event.html",
        title=f"Audit event {seq}",
        section="admin",
        user=found.principal.username,
        console=True,
        csrf_token=found.csrf_token(pages.csrf),
        event=events[0],
    )


@router.get(AUDIT_SCRIPT_PATH, dependencies=[Depends(public)])
async def audit_script() -> Response:
    return Response(
        _SCRIPT, media_type="text/javascript", headers={"Cache-Control": "public, max-age=3600"}
    )
