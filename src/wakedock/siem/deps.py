"""What the SIEM routes ask for (see web/provided.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from wakedock.siem.exporter import SiemExporter
from wakedock.web.provided import provider

siem_exporter = provider(SiemExporter)
SiemExporterDep = Annotated[SiemExporter, Depends(siem_exporter)]
