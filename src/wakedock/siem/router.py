"""/api/v1/siem/sinks: delivery state of each SIEM sink (backlog, last delivery, last error)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from wakedock.rbac.dependencies import requires
from wakedock.rbac.permissions import Permission
from wakedock.siem.deps import SiemExporterDep

router = APIRouter(prefix="/api/v1/siem", tags=["siem"])


@router.get("/sinks", dependencies=[Depends(requires(Permission.AUDIT_READ))])
def sinks(siem: SiemExporterDep) -> list[dict[str, Any]]:
    return [status.__dict__ for status in siem.status()]
