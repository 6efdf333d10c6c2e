"""What the dashboard's routes ask for (see web/provided.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from wakedock.dashboard.board import ServicesBoard
from wakedock.dashboard.csp import CspReports
from wakedock.dashboard.detail import ServiceDetails
from wakedock.web.provided import provider

services_board = provider(ServicesBoard)
ServicesBoardDep = Annotated[ServicesBoard, Depends(services_board)]
csp_reports = provider(CspReports)
CspReportsDep = Annotated[CspReports, Depends(csp_reports)]
service_details = provider(ServiceDetails)
ServiceDetailsDep = Annotated[ServiceDetails, Depends(service_details)]
