"""/api/v1/health (readiness: each component's state) and /api/v1/health/live (liveness).

Both public; neither reveals anything sensitive (component names and states only, and the
expiry of the certificate every client is shown anyway).
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from wakedock.health.certificate import CertificateExpiry, CertificateStatus
from wakedock.health.checks import Health, worst
from wakedock.health.deps import CertificateWatchDep, HealthChecksDep
from wakedock.rbac.dependencies import public

router = APIRouter(prefix="/api/v1", tags=["health"])


class CertificateReport(BaseModel):
    """The TLS certificate this process serves: `warning` within a warning threshold (30 and 14
    days by default), `critical` within the last one (3 days), then `expired`."""

    not_after: datetime
    days_left: int
    status: CertificateStatus


class HealthReport(BaseModel):
    status: Health
    components: dict[str, Health]
    # Absent when this process serves no TLS (plain HTTP, or TLS ended by a proxy in front).
    certificate: CertificateReport | None = None


# A certificate about to expire, or expired, degrades the report; it never makes it `down`
# (503): the process still serves, and an orchestrator restarting it would not help.
_CERTIFICATE_HEALTH = {
    CertificateStatus.OK: Health.OK,
    CertificateStatus.WARNING: Health.OK,
    CertificateStatus.CRITICAL: Health.DEGRADED,
    CertificateStatus.EXPIRED: Health.DEGRADED,
}


def _certificate(standing: CertificateExpiry) -> CertificateReport:
    return CertificateReport(
        not_after=standing.certificate.not_after,
        days_left=standing.days_left,
        status=standing.status,
    )


class Liveness(BaseModel):
    status: Health


@router.get(
    "/health",
    dependencies=[Depends(public)],
    response_model=HealthReport,
    responses={503: {"model": HealthReport, "description": "a component is down"}},
)
async def health(checks: HealthChecksDep, certificate: CertificateWatchDep) -> JSONResponse:
    """Each component `ok`, `degraded` or `down`; the overall status is the worst of them.

    HTTP 503 while one is down (e.g. the database, or the rate-limit store: logins fail closed).
    Cached for a second or two: a flood of calls does not reach the components. When this
    process serves TLS, `certificate` gives its expiry, and the `tls_certificate` component is
    degraded within the last warning threshold or once expired.
    """
    states = dict(await checks.report())
    standing = certificate.current()
    if standing is not None:
        states["tls_certificate"] = _CERTIFICATE_HEALTH[standing.status]
    report = HealthReport(
        status=worst(list(states.values())),
        components=states,
        certificate=None if standing is None else _certificate(standing),
    )
    status = 503 if report.status is Health.DOWN else 200
    return JSONResponse(report.model_dump(mode="json"), status_code=status)


@router.get("/health/live", dependencies=[Depends(public)], response_model=Liveness)
async def live() -> Liveness:
    """The process answers (no I/O at all): what a load balancer or orchestrator should poll."""
    return Liveness(status=Health.OK)
