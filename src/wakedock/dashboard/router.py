"""`POST /csp-report`: where browsers report what the Content-Security-Policy refused.

Thin: read the (size-limited) body, parse it, record it (rate-limited, audited); see csp.py.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool

from wakedock.dashboard.csp import CSP_REPORT_PATH, parse_reports
from wakedock.dashboard.deps import CspReportsDep
from wakedock.rbac.dependencies import public
from wakedock.web.deps import context_of

router = APIRouter(tags=["pages"], include_in_schema=False)


@router.post(CSP_REPORT_PATH, status_code=204, dependencies=[Depends(public)])
async def csp_report(request: Request, reports: CspReportsDep) -> Response:
    """Browsers send these without a session or CSRF token: the budget of the address and the
    body limit are what bound them (400 not a report, 413 too large, 429 over budget)."""
    violations = parse_reports(await request.body())
    await run_in_threadpool(reports.record, violations, context_of(request))
    return Response(status_code=204)
