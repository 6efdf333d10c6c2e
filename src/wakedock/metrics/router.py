"""GET /metrics: Prometheus text format, for holders of `metrics:read` only (a bearer token)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse

from wakedock.components import Components
from wakedock.metrics.counters import exposition, running_services
from wakedock.rbac.dependencies import requires
from wakedock.rbac.permissions import Permission
from wakedock.web.deps import components

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    dependencies=[Depends(requires(Permission.METRICS_READ))],
    response_class=PlainTextResponse,
)
async def metrics(c: Components = Depends(components)) -> PlainTextResponse:
    await run_in_threadpool(c.metrics.refresh)
    running = await run_in_threadpool(running_services, c.db)
    sinks = await run_in_threadpool(c.siem.status)
    body = exposition(c.metrics, len(c.wakes.awake_names()), running, sinks)
    return PlainTextResponse(body, media_type="text/plain; version=0.0.4; charset=utf-8")
