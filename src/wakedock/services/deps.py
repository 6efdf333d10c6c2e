"""What the services routes ask for (see web/provided.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from wakedock.services.service import ServiceManager
from wakedock.services.snapshots import WakeSnapshots
from wakedock.web.provided import provider

service_manager = provider(ServiceManager)
ServiceManagerDep = Annotated[ServiceManager, Depends(service_manager)]
# The proxy's side of a service (wake phase, traffic), for its status.
wake_snapshots = provider(WakeSnapshots)  # type: ignore[type-abstract]
WakeSnapshotsDep = Annotated[WakeSnapshots, Depends(wake_snapshots)]
