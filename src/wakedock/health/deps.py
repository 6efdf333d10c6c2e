"""What the health routes ask for (see web/provided.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from wakedock.health.certificate import CertificateWatch
from wakedock.health.checks import HealthChecks
from wakedock.web.provided import provider

health_checks = provider(HealthChecks)
HealthChecksDep = Annotated[HealthChecks, Depends(health_checks)]

certificate_watch = provider(CertificateWatch)
CertificateWatchDep = Annotated[CertificateWatch, Depends(certificate_watch)]
