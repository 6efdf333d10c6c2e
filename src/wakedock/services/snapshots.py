"""Read-only snapshots: of service rows (safe to hand out after the transaction closed), and of
what this process sees of a service's wakes and traffic (the proxy's side, read by the status
endpoint through the `WakeSnapshots` port)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from wakedock.auth.sessions import Principal
from wakedock.rbac.permissions import Role
from wakedock.services.models import Service
from wakedock.services.spec import ServiceSpec


@dataclass(frozen=True)
class Actor:
    """Who acts on a service: a signed-in user, or the local CLI (acting as an admin)."""

    name: str
    role: str
    user_id: int | None = None

    @classmethod
    def of(cls, principal: Principal) -> Actor:
        """The signed-in caller of an API request, as the services layer knows it."""
        return cls(name=principal.username, role=principal.role, user_id=principal.user_id)

    @property
    def manages_all(self) -> bool:
        """Operators and admins manage every service; developers only their own."""
        return self.role in (Role.ADMIN, Role.OPERATOR)

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN


@dataclass(frozen=True)
class ServiceView:
    id: int
    name: str
    owner_id: int | None
    source: str
    spec: ServiceSpec
    writable_root_granted: bool
    runtime: str
    container_ref: str | None
    state: str
    stop_reason: str | None
    created_at: datetime
    updated_at: datetime
    last_started_at: datetime | None
    last_stopped_at: datetime | None

    @classmethod
    def of(cls, row: Service) -> ServiceView:
        return cls(
            id=row.id,
            name=row.name,
            owner_id=row.owner_id,
            source=row.source,
            spec=ServiceSpec.model_validate(json.loads(row.spec)),
            writable_root_granted=row.writable_root_granted,
            runtime=row.runtime,
            container_ref=row.container_ref,
            state=row.state,
            stop_reason=row.stop_reason,
            created_at=row.created_at,
            updated_at=row.updated_at,
            last_started_at=row.last_started_at,
            last_stopped_at=row.last_stopped_at,
        )


def spec_json(spec: ServiceSpec) -> str:
    return json.dumps(spec.model_dump(mode="json"), sort_keys=True)


class WakePhase(StrEnum):
    """Where a service is in its wake cycle, in this process."""

    ASLEEP = "asleep"
    WAKING = "waking"
    READY = "ready"
    FAILED = "failed"
    STOPPING = "stopping"


@dataclass(frozen=True)
class WakeSnapshot:
    """A service's wake state and traffic at one moment."""

    phase: WakePhase
    # Seconds since the last wake began (None before the first).
    waking_for: float | None
    # Seconds from the wake request to the passed readiness probe, for the last wake.
    time_to_ready: float | None
    last_activity: datetime | None
    open_connections: int


class WakeSnapshots(Protocol):
    """Who can tell a service's wake state (the proxy's wake coordinator)."""

    def snapshot(self, name: str) -> WakeSnapshot: ...
