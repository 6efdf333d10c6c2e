"""GET /metrics: Prometheus text format, for holders of `metrics:read` only (a bearer token)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse

from wakedock.metrics.deps import MetricsDep
from wakedock.rbac.dependencies import requires
from wakedock.rbac.permissions import Permission

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    dependencies=[Depends(requires(Permission.METRICS_READ))],
    response_class=PlainTextResponse,
)
async def metrics(report: MetricsDep) -> PlainTextResponse:
    body = await report.exposition()
    return PlainTextResponse(body, media_type="text/plain; version=0.0.4; charset=utf-8")
