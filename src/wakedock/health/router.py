"""/api/v1/health (readiness: each component's state) and /api/v1/health/live (liveness).

Both public; neither reveals anything sensitive (component names and states only).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from wakedock.health.checks import Health, worst
from wakedock.health.deps import HealthChecksDep
from wakedock.rbac.dependencies import public

router = APIRouter(prefix="/api/v1", tags=["health"])


class HealthReport(BaseModel):
    status: Health
    components: dict[str, Health]


class Liveness(BaseModel):
    status: Health


@router.get(
    "/health",
    dependencies=[Depends(public)],
    response_model=HealthReport,
    responses={503: {"model": HealthReport, "description": "a component is down"}},
)
async def health(checks: HealthChecksDep) -> JSONResponse:
    """Each component `ok`, `degraded` or `down`; the overall status is the worst of them.

    HTTP 503 while one is down (e.g. the database, or the rate-limit store: logins fail closed).
    Cached for a second or two: a flood of calls does not reach the components.
    """
    states = await checks.report()
    report = HealthReport(status=worst(list(states.values())), components=states)
    status = 503 if report.status is Health.DOWN else 200
    return JSONResponse(report.model_dump(mode="json"), status_code=status)


@router.get("/health/live", dependencies=[Depends(public)], response_model=Liveness)
async def live() -> Liveness:
    """The process answers (no I/O at all): what a load balancer or orchestrator should poll."""
    return Liveness(status=Health.OK)
