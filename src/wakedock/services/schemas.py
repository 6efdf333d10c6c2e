"""Service shapes on the wire. The request body of a create is `ServiceSpec` itself."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from wakedock.runtime.base import ContainerStats, ContainerStatus
from wakedock.services.snapshots import ServiceView, WakeSnapshot


class ServiceOut(BaseModel):
    id: int
    name: str
    display_name: str | None
    owner_id: int | None
    source: str
    runtime: str
    state: str
    stop_reason: str | None
    writable_root_granted: bool
    spec: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    last_started_at: datetime | None
    last_stopped_at: datetime | None

    @classmethod
    def of(cls, view: ServiceView) -> ServiceOut:
        return cls(
            id=view.id,
            name=view.name,
            display_name=view.spec.display_name,
            owner_id=view.owner_id,
            source=view.source,
            runtime=view.runtime,
            state=view.state,
            stop_reason=view.stop_reason,
            writable_root_granted=view.writable_root_granted,
            spec=view.spec.model_dump(mode="json"),
            created_at=view.created_at,
            updated_at=view.updated_at,
            last_started_at=view.last_started_at,
            last_stopped_at=view.last_stopped_at,
        )


class StatusOut(BaseModel):
    name: str
    # What the engine says now: running, paused, stopped, starting, or missing.
    state: str
    health: str | None
    stop_reason: str | None
    # How the container's last run ended (once it has): its exit code, and the engine's reason
    # when it gave one (e.g. killed: out of memory). The container's logs say more.
    exit_code: int | None = None
    exit_error: str | None = None
    last_started_at: datetime | None
    last_stopped_at: datetime | None
    # What this WakeDock process sees of its traffic (S7): the proxy's view.
    wake_phase: str
    last_activity: datetime | None
    open_connections: int
    time_to_ready_s: float | None

    @classmethod
    def of(
        cls, view: ServiceView, live: ContainerStatus | None, traffic: WakeSnapshot
    ) -> StatusOut:
        return cls(
            name=view.name,
            state=live.state.value if live is not None else "missing",
            health=live.health if live is not None else None,
            stop_reason=view.stop_reason,
            exit_code=live.exit_code if live is not None else None,
            exit_error=live.error if live is not None else None,
            last_started_at=view.last_started_at,
            last_stopped_at=view.last_stopped_at,
            wake_phase=traffic.phase.value,
            last_activity=traffic.last_activity,
            open_connections=traffic.open_connections,
            time_to_ready_s=traffic.time_to_ready,
        )


class StatsOut(BaseModel):
    cpu_percent: float
    memory_bytes: int
    memory_limit_bytes: int
    memory_percent: float
    network_rx_bytes: int
    network_tx_bytes: int

    @classmethod
    def of(cls, stats: ContainerStats) -> StatsOut:
        limit = stats.memory_limit_bytes
        return cls(
            cpu_percent=stats.cpu_percent,
            memory_bytes=stats.memory_bytes,
            memory_limit_bytes=limit,
            memory_percent=round(stats.memory_bytes / limit * 100, 2) if limit else 0.0,
            network_rx_bytes=stats.network_rx_bytes,
            network_tx_bytes=stats.network_tx_bytes,
        )
