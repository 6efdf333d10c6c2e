"""/api/v1/services: define, start, stop and watch services (S6.1).

Handlers are plain `def`: FastAPI runs them on its thread pool, so Docker SDK calls never block
the event loop. Reading needs `services:read`; developers change and operate only their own.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Response
from fastapi.responses import PlainTextResponse

from wakedock.auth.sessions import Principal
from wakedock.context import RequestContext
from wakedock.rbac.dependencies import requires
from wakedock.rbac.permissions import Permission
from wakedock.services.deps import ServiceManagerDep, WakeSnapshotsDep
from wakedock.services.patch import ServicePatch
from wakedock.services.schemas import ServiceOut, StatsOut, StatusOut
from wakedock.services.snapshots import Actor
from wakedock.services.spec import ServiceSpec
from wakedock.web.deps import request_context
from wakedock.web.openapi import body_shaped_as, errors
from wakedock.web.params import RowId

router = APIRouter(prefix="/api/v1/services", tags=["services"])
_READ = Depends(requires(Permission.SERVICES_READ))
# What the engine may answer to a change: refused (400), in the way of the current state (409),
# failed (502).
_ENGINE = errors(400, 409, 502)


@router.get("", response_model=list[ServiceOut], dependencies=[_READ])
def list_services(services: ServiceManagerDep) -> list[ServiceOut]:
    return [ServiceOut.of(view) for view in services.list()]


@router.post("", response_model=ServiceOut, status_code=201, responses=_ENGINE)
def create_service(
    spec: ServiceSpec,
    services: ServiceManagerDep,
    principal: Principal = Depends(requires(Permission.SERVICES_WRITE)),
    context: RequestContext = Depends(request_context),
) -> ServiceOut:
    """Create a service and its stopped, hardened container. The creator owns it."""
    view = services.create(Actor.of(principal), spec, context, owner_id=principal.user_id)
    return ServiceOut.of(view)


@router.get("/{service_id}", response_model=ServiceOut, dependencies=[_READ])
def get_service(service_id: RowId, services: ServiceManagerDep) -> ServiceOut:
    return ServiceOut.of(services.get(service_id))


@router.patch(
    "/{service_id}",
    response_model=ServiceOut,
    responses=_ENGINE,
    openapi_extra=body_shaped_as(ServicePatch),
)
def update_service(
    service_id: RowId,
    services: ServiceManagerDep,
    changes: dict[str, Any] = Body(...),
    principal: Principal = Depends(requires(Permission.SERVICES_WRITE)),
    context: RequestContext = Depends(request_context),
) -> ServiceOut:
    """Change some fields; the result is validated and policy-checked like a new spec. The
    body is read as a ServicePatch here, so that a bad one answers `invalid_spec` like a bad
    merged spec."""
    patch = ServicePatch.parse(changes)
    return ServiceOut.of(services.update(Actor.of(principal), service_id, patch, context))


@router.delete("/{service_id}", status_code=204, responses=_ENGINE)
def delete_service(
    service_id: RowId,
    services: ServiceManagerDep,
    principal: Principal = Depends(requires(Permission.SERVICES_WRITE)),
    context: RequestContext = Depends(request_context),
) -> Response:
    services.delete(Actor.of(principal), service_id, context)
    return Response(status_code=204)


@router.post("/{service_id}/start", response_model=ServiceOut, responses=_ENGINE)
def start_service(
    service_id: RowId,
    services: ServiceManagerDep,
    principal: Principal = Depends(requires(Permission.SERVICES_OPERATE)),
    context: RequestContext = Depends(request_context),
) -> ServiceOut:
    return ServiceOut.of(services.start(Actor.of(principal), service_id, context))


@router.post("/{service_id}/stop", response_model=ServiceOut, responses=_ENGINE)
def stop_service(
    service_id: RowId,
    services: ServiceManagerDep,
    principal: Principal = Depends(requires(Permission.SERVICES_OPERATE)),
    context: RequestContext = Depends(request_context),
) -> ServiceOut:
    return ServiceOut.of(services.stop(Actor.of(principal), service_id, context))


@router.get(
    "/{service_id}/status", response_model=StatusOut, dependencies=[_READ], responses=errors(502)
)
def service_status(
    service_id: RowId, services: ServiceManagerDep, wakes: WakeSnapshotsDep
) -> StatusOut:
    view, live = services.status(service_id)
    return StatusOut.of(view, live, wakes.snapshot(view.name))


@router.get(
    "/{service_id}/stats",
    response_model=StatsOut,
    dependencies=[_READ],
    responses=errors(409, 502),
)
def service_stats(service_id: RowId, services: ServiceManagerDep) -> StatsOut:
    return StatsOut.of(services.stats(service_id))


@router.get("/{service_id}/logs", response_class=PlainTextResponse, responses=errors(409, 502))
def service_logs(
    service_id: RowId,
    services: ServiceManagerDep,
    tail: int = Query(default=100, ge=1, le=10_000),
    principal: Principal = Depends(requires(Permission.SERVICES_OPERATE)),
) -> Response:
    """The last `tail` log lines. Logs may hold anything an app prints: owners and operators."""
    text = services.logs(Actor.of(principal), service_id, tail)
    return Response(text, media_type="text/plain; charset=utf-8")
