"""/api/v1/health: liveness and readiness, public, reveals nothing sensitive."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from wakedock.components import Components
from wakedock.rbac.dependencies import public
from wakedock.web.deps import components

router = APIRouter(prefix="/api/v1", tags=["health"])


@router.get("/health", dependencies=[Depends(public)])
async def health(c: Components = Depends(components)) -> dict[str, str]:
    """`degraded` while the secrets backend is down (values are served from memory)."""
    if c.secret_provider is not None and c.secret_provider.degraded:
        return {"status": "degraded"}
    return {"status": "ok"}
