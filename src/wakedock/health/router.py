"""/api/v1/health: liveness and readiness, public, reveals nothing sensitive."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from wakedock.rbac.dependencies import public

router = APIRouter(prefix="/api/v1", tags=["health"])


@router.get("/health", dependencies=[Depends(public)])
async def health() -> dict[str, str]:
    return {"status": "ok"}
