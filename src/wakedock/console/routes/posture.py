"""`/admin/posture`: the seed's security KPIs, measured (console/posture.py), never typed in.

Needs `security:read` (the permission of the API's MFA adoption figures) besides
`console:read`. Database reads run on a worker thread, the engine's CIS reads come from the
briefly cached `ContainerChecks`, the health and certificate states from their own caches.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from sqlalchemy.orm import Session, sessionmaker

from wakedock.alerts.webhooks import AlertSink
from wakedock.clock import Clock
from wakedock.console.access import console_session
from wakedock.console.deps import ContainerChecksDep
from wakedock.console.posture import (
    MTTD_TARGET_SECONDS,
    SIGN_IN_HOURS,
    Adoption,
    AlertState,
    RaisedAlert,
    SignInSeries,
    alert_state,
    median_seconds,
    mfa_adoption,
    raised_alerts,
    sign_in_series,
)
from wakedock.dashboard.browser import Pages, PagesDep
from wakedock.dashboard.charts import Chart, bar_chart
from wakedock.health.deps import CertificateWatchDep, HealthChecksDep
from wakedock.rbac.dependencies import public
from wakedock.rbac.permissions import Permission
from wakedock.secrets.deps import SecretProviderDep
from wakedock.siem.deps import SiemExporterDep
from wakedock.siem.exporter import SiemExporter, SinkStatus
from wakedock.siem.sinks import safe_error
from wakedock.web.deps import SessionFactoryDep
from wakedock.web.provided import provider
from wakedock.web.templating import render_page

router = APIRouter(tags=["pages"], include_in_schema=False)
POSTURE_PATH = "/admin/posture"
ClockDep = Depends(provider(Clock))


@dataclass(frozen=True)
class _Measured:
    """What the database says, read in one worker-thread hop."""

    adoption: list[Adoption]
    sign_ins: SignInSeries
    alerts: list[RaisedAlert]
    sinks: list[SinkStatus]


def _measure(factory: sessionmaker[Session], siem: SiemExporter, now: datetime) -> _Measured:
    with factory() as db:
        adoption = mfa_adoption(db)
        series = sign_in_series(db, now)
        alerts = raised_alerts(db, now)
    return _Measured(adoption, series, alerts, siem.status())


# Each chart: its key, its title, its values' names (one, many), and where it reads them.
_SIGN_IN_CHARTS = (
    ("failed", "Failed sign-ins per hour", "failed sign-in", "failed sign-ins", "failed"),
    ("limited", "Rate-limit hits per hour", "rate-limit hit", "rate-limit hits", "limited"),
    ("locked", "Locked-out accounts per hour", "locked-out account", "locked-out accounts",
     "locked_out"),
)  # fmt: skip


def _charts(series: SignInSeries) -> list[Chart]:
    """The three sign-in charts: one bar per hour, each bar's title its hour and count."""
    first = f"{series.hours[0][-2:]}:00"
    last = f"{series.hours[-1][-2:]}:00 UTC"
    charts = []
    for key, title, one, many, field in _SIGN_IN_CHARTS:
        values: list[int] = getattr(series, field)

        def counted(n: int, one: str = one, many: str = many) -> str:
            return f"{n} {one if n == 1 else many}"

        labels = [f"{h}:00 UTC: {counted(n)}" for h, n in zip(series.hours, values, strict=True)]
        total, peak = sum(values), max(values)
        summary = (
            f"{counted(total)} in the last {SIGN_IN_HOURS} hours, at most {peak} in one hour."
            if total
            else f"No {many} in the last {SIGN_IN_HOURS} hours."
        )
        charts.append(
            bar_chart(key, title, values, labels, "", summary, first_label=first, last_label=last)
        )
    return charts


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


@router.get(POSTURE_PATH, dependencies=[Depends(public)])
async def posture_page(
    request: Request,
    factory: SessionFactoryDep,
    siem: SiemExporterDep,
    health: HealthChecksDep,
    certificate: CertificateWatchDep,
    fleet: ContainerChecksDep,
    secrets: SecretProviderDep,
    pages: Pages = PagesDep,
    clock: Clock = ClockDep,
) -> Response:
    found = await console_session(request, pages, POSTURE_PATH, Permission.SECURITY_READ)
    if isinstance(found, Response):
        return found
    now = clock.now()
    measured = await run_in_threadpool(_measure, factory, siem, now)
    report = await health.report()
    median = median_seconds(measured.alerts)
    # The alert pipeline's cursor says whether its last attempt failed, and why.
    pipeline = next((s for s in measured.sinks if s.name == AlertSink.name), None)
    states = [alert_state(a, pipeline) for a in measured.alerts]
    return render_page(
        "console_posture.html",
        title="Security posture",
        section="admin",
        user=found.principal.username,
        console=True,
        csrf_token=found.csrf_token(pages.csrf),
        now=now,
        adoption=measured.adoption,
        charts=_charts(measured.sign_ins),
        alerts=list(zip(measured.alerts, states, strict=True)),
        undelivered=sum(state is not AlertState.DELIVERED for state in states),
        pipeline_error=safe_error(pipeline.last_error) if pipeline else None,
        safe_error=safe_error,
        median=_duration(median),
        median_met=median is not None and median < MTTD_TARGET_SECONDS,
        mttd_target=_duration(MTTD_TARGET_SECONDS),
        duration=_duration,
        sinks=measured.sinks,
        containers=await fleet.current(),
        secrets_backend=safe_error(secrets.name),
        secrets_state=report.get("secrets"),
        certificate=certificate.current(),
    )
