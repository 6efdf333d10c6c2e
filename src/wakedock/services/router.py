"""/api/v1/services: define, start, stop and watch services (S6.1).

Handlers are plain `def`: FastAPI runs them on its thread pool, so Docker SDK calls never block
the event loop. Reading needs `services:read`; developers change and operate only their own.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Response
from fastapi.responses import PlainTextResponse

from wakedock.auth.sessions import Principal
from wakedock.components import Components
from wakedock.context import RequestContext
from wakedock.rbac.dependencies import requires
from wakedock.rbac.permissions import Permission
from wakedock.services.schemas import ServiceOut, StatsOut, StatusOut, Traffic
from wakedock.services.spec import ServiceSpec
from wakedock.services.views import Actor
from wakedock.web.deps import components, request_context
from wakedock.web.openapi import errors
from wakedock.web.params import RowId

router = APIRouter(prefix="/api/v1/services", tags=["services"])
_READ = Depends(requires(Permission.SERVICES_READ))
# What the engine may answer to a change: refused (400), in the way of the current state (409),
# failed (502).
_ENGINE = errors(400, 409, 502)


def actor_of(principal: Principal) -> Actor:
    return Actor(name=principal.username, role=principal.role, user_id=principal.user_id)


@router.get("", response_model=list[ServiceOut], dependencies=[_READ])
def list_services(c: Components = Depends(components)) -> list[ServiceOut]:
    return [ServiceOut.of(view) for view in c.services.list()]


@router.post("", response_model=ServiceOut, status_code=201, responses=_ENGINE)
def create_service(
    spec: ServiceSpec,
    principal: Principal = Depends(requires(Permission.SERVICES_WRITE)),
    c: Components = Depends(components),
    context: RequestContext = Depends(request_context),
) -> ServiceOut:
    """Create a service and its stopped, hardened container. The creator owns it."""
    view = c.services.create(actor_of(principal), spec, context, owner_id=principal.user_id)
    return ServiceOut.of(view)


@router.get("/{service_id}", response_model=ServiceOut, dependencies=[_READ])
def get_service(service_id: RowId, c: Components = Depends(components)) -> ServiceOut:
    return ServiceOut.of(c.services.get(service_id))


@router.patch("/{service_id}", response_model=ServiceOut, responses=_ENGINE)
def update_service(
    service_id: RowId,
    changes: dict[str, Any] = Body(...),
    principal: Principal = Depends(requires(Permission.SERVICES_WRITE)),
    c: Components = Depends(components),
    context: RequestContext = Depends(request_context),
) -> ServiceOut:
    """Change some fields; the result is validated and policy-checked like a new spec."""
    return ServiceOut.of(c.services.update(actor_of(principal), service_id, changes, context))


@router.delete("/{service_id}", status_code=204, responses=_ENGINE)
def delete_service(
    service_id: RowId,
    principal: Principal = Depends(requires(Permission.SERVICES_WRITE)),
    c: Components = Depends(components),
    context: RequestContext = Depends(request_context),
) -> Response:
    c.services.delete(actor_of(principal), service_id, context)
    return Response(status_code=204)


@router.post("/{service_id}/start", response_model=ServiceOut, responses=_ENGINE)
def start_service(
    service_id: RowId,
    principal: Principal = Depends(requires(Permission.SERVICES_OPERATE)),
    c: Components = Depends(components),
    context: RequestContext = Depends(request_context),
) -> ServiceOut:
    return ServiceOut.of(c.services.start(actor_of(principal), service_id, context))


@router.post("/{service_id}/stop", response_model=ServiceOut, responses=_ENGINE)
def stop_service(
    service_id: RowId,
    principal: Principal = Depends(requires(Permission.SERVICES_OPERATE)),
    c: Components = Depends(components),
    context: RequestContext = Depends(request_context),
) -> ServiceOut:
    return ServiceOut.of(c.services.stop(actor_of(principal), service_id, context))


@router.get(
    "/{service_id}/status", response_model=StatusOut, dependencies=[_READ], responses=errors(502)
)
def service_status(service_id: RowId, c: Components = Depends(components)) -> StatusOut:
    view, live = c.services.status(service_id)
    wake = c.wakes.state(view.name)
    activity = c.activity.of(view.name)
    traffic = Traffic(wake.phase, activity.last_seen, activity.open_connections, wake.time_to_ready)
    return StatusOut.of(view, live, traffic)


@router.get(
    "/{service_id}/stats",
    response_model=StatsOut,
    dependencies=[_READ],
    responses=errors(409, 502),
)
def service_stats(service_id: RowId, c: Components = Depends(components)) -> StatsOut:
    return StatsOut.of(c.services.stats(service_id))


@router.get("/{service_id}/logs", response_class=PlainTextResponse, responses=errors(409, 502))
def service_logs(
    service_id: RowId,
    tail: int = Query(default=100, ge=1, le=10_000),
    principal: Principal = Depends(requires(Permission.SERVICES_OPERATE)),
    c: Components = Depends(components),
) -> Response:
    """The last `tail` log lines. Logs may hold anything an app prints: owners and operators."""
    text = c.services.logs(actor_of(principal), service_id, tail)
    return Response(text, media_type="text/plain; charset=utf-8")
