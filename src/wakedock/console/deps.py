"""What the console's pages ask for beyond the dashboard's (see web/provided.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from wakedock.console.container_checks import ContainerChecks
from wakedock.web.provided import provider

container_checks = provider(ContainerChecks)
ContainerChecksDep = Annotated[ContainerChecks, Depends(container_checks)]
