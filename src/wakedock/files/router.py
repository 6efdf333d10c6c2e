"""/api/v1/files/{path}: read and replace service files under the data directory.

Files of service `app` live under `app/`; developers reach only the folders of their services.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from wakedock.audit.deps import AuditorDep
from wakedock.audit.events import Event, EventType, Outcome
from wakedock.audit.service import Auditor
from wakedock.auth.sessions import Principal
from wakedock.context import RequestContext
from wakedock.files.deps import FileStoreDep
from wakedock.files.store import PathRefused
from wakedock.rbac.dependencies import requires
from wakedock.rbac.permissions import Permission
from wakedock.services.deps import ServiceManagerDep
from wakedock.services.errors import NotServiceOwner, ServiceNotFound
from wakedock.services.service import ServiceManager
from wakedock.services.snapshots import Actor
from wakedock.web.deps import request_context
from wakedock.web.openapi import errors

router = APIRouter(prefix="/api/v1/files", tags=["files"])


async def _refused(auditor: Auditor, context: RequestContext, path: str, exc: PathRefused) -> None:
    """Every refused path is a possible traversal attempt: audit it, then answer 400."""
    event = Event(
        EventType.PATH_TRAVERSAL,
        Outcome.DENIED,
        target=path[:256],
        details={"reason": exc.detail},
    )
    await run_in_threadpool(auditor.record, event, context)


async def _check_owner(
    services: ServiceManager,
    auditor: Auditor,
    context: RequestContext,
    principal: Principal,
    path: str,
) -> None:
    """A developer's files live under the folder of a service it owns: `<service>/...`."""
    actor = Actor.of(principal)
    if actor.manages_all:
        return
    folder = path.split("/", 1)[0]
    try:
        await run_in_threadpool(services.check_manages, actor, folder)
    except (NotServiceOwner, ServiceNotFound):
        event = Event(
            EventType.FORBIDDEN_ACCESS,
            Outcome.DENIED,
            target=path[:256],
            details={"reason": "files of a service the user does not own"},
        )
        await run_in_threadpool(auditor.record, event, context)
        raise NotServiceOwner("you can only manage files of services you own") from None


_BYTES = {"schema": {"type": "string", "format": "binary"}}


class FileWritten(BaseModel):
    path: str
    size: int


@router.get(
    "/{path:path}",
    response_class=Response,
    responses={
        200: {"description": "The file", "content": {"application/octet-stream": _BYTES}},
        **errors(400),
    },
)
async def read_file(
    path: str,
    auditor: AuditorDep,
    files: FileStoreDep,
    services: ServiceManagerDep,
    principal: Principal = Depends(requires(Permission.FILES_READ)),
    context: RequestContext = Depends(request_context),
) -> Response:
    await _check_owner(services, auditor, context, principal, path)
    try:
        content = await run_in_threadpool(files.read, path)
    except PathRefused as exc:
        await _refused(auditor, context, path, exc)
        raise
    read = Event(EventType.DATA_ACCESS, target=path[:256], details={"bytes": len(content)})
    await run_in_threadpool(auditor.record, read, context)
    # Served as an opaque download: never rendered by a browser on WakeDock's origin.
    return Response(
        content,
        media_type="application/octet-stream",
        headers={"Content-Disposition": "attachment"},
    )


@router.put(
    "/{path:path}",
    response_model=FileWritten,
    responses=errors(400, 413),
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/octet-stream": _BYTES}}
    },
)
async def write_file(
    path: str,
    request: Request,
    auditor: AuditorDep,
    files: FileStoreDep,
    services: ServiceManagerDep,
    principal: Principal = Depends(requires(Permission.FILES_WRITE)),
    context: RequestContext = Depends(request_context),
) -> FileWritten:
    """Replace a file with the request body (at most 1 MiB), atomically."""
    await _check_owner(services, auditor, context, principal, path)
    # At most MAX_FILE_BYTES: web/body_limit.py refuses a larger body while reading it.
    content = await request.body()
    try:
        written = await run_in_threadpool(files.write, path, content)
    except PathRefused as exc:
        await _refused(auditor, context, path, exc)
        raise
    event = Event(EventType.FILE_WRITE, target=path[:256], details={"bytes": written})
    await run_in_threadpool(auditor.record, event, context)
    return FileWritten(path=path, size=written)
