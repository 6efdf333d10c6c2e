"""The services board: what the services page shows and the actions its buttons take.

Reading joins the stored services (`ServiceManager.list`, what `GET /api/v1/services` reads) with
what this process sees of their wakes (`WakeCoordinator.snapshot`, the proxy's side) and the
owners' names. The actions are the API's and the proxy's own: the same ownership rule
(`ServiceManager.check_manages`), a wake decided where every wake is decided
(`WakeCoordinator.request`: access, the address's wake budget, `proxy.max_awake`), a stop through
`ServiceManager.stop` (audited `service_stop` as the API's). Testable without HTTP.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from wakedock.auth.models import User
from wakedock.auth.sessions import Principal
from wakedock.clock import Clock
from wakedock.context import RequestContext
from wakedock.errors import Conflict, DependencyUnavailable, PermissionDenied, TooManyAttempts
from wakedock.proxy.decision import Ready, Refusal, Refused
from wakedock.proxy.wake import WakeCoordinator
from wakedock.rbac.permissions import Permission
from wakedock.rbac.roles import has_permission
from wakedock.runtime.base import State
from wakedock.services.service import ServiceManager
from wakedock.services.snapshots import Actor, ServiceView, WakePhase

# Rows per page: a page of 1,000 services stays small (HTML + CSS + JS under 150 KiB).
PAGE_SIZE = 50
# The states the page filters by (the stored state of a service).
STATE_FILTERS = (
    State.RUNNING.value,
    "stopping",
    State.STOPPED.value,
    State.PAUSED.value,
)


class Action(StrEnum):
    """What the buttons of a service's row do."""

    WAKE = "wake"
    STOP = "stop"
    RESTART = "restart"


class WakeRefused(Conflict):
    """The wake decision refused (access, the address's wake budget, capacity)."""

    code = "wake_refused"


@dataclass(frozen=True)
class ServiceRow:
    """One service as the page shows it."""

    name: str
    title: str
    host: str
    state: str
    phase: str
    last_activity: datetime | None
    # Seconds left before the idle reaper stops it; None unless awake in this process.
    idle_left_s: int | None
    idle_timeout_s: int
    time_to_ready_s: float | None
    owner: str
    can_operate: bool
    # `services:write`, ownership, and not configured by labels: the form's Edit link.
    can_edit: bool = False

    def live(self) -> dict[str, object]:
        """The fields the page's script refreshes in place."""
        return {
            "state": self.state,
            "phase": self.phase,
            "last_activity": self.last_activity.isoformat() if self.last_activity else None,
            "idle_left_s": self.idle_left_s,
            "time_to_ready_s": self.time_to_ready_s,
        }


@dataclass(frozen=True)
class Board:
    """The rows a user sees (after search and filter), and how many services are awake."""

    rows: list[ServiceRow]
    # Every service, and those matching the search and filter (of which `rows` is one page).
    total: int
    matching: int
    awake: int
    max_awake: int
    # The user's role may operate services (some rows may still not be theirs).
    operates: bool
    page: int = 1
    pages: int = 1
    # The user's role may create services (the New service link).
    writes: bool = False

    @property
    def first(self) -> int:
        """The position of the first row shown (1-based; 0 when none)."""
        return (self.page - 1) * PAGE_SIZE + 1 if self.rows else 0


class ServicesBoard:
    """The services page's reads and actions, for one signed-in principal at a time."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        services: ServiceManager,
        wakes: WakeCoordinator,
        clock: Clock,
        *,
        base_domain: str,
        max_awake: int,
    ) -> None:
        self._factory = factory
        self._services = services
        self._wakes = wakes
        self._clock = clock
        self._base_domain = base_domain
        self._max_awake = max_awake

    async def board(
        self, principal: Principal, search: str = "", state: str = "", page: int = 1
    ) -> Board:
        """Every service (anyone with `services:read` sees them all, as in the API), narrowed
        by `search` (in the name or display name) and `state`, one page of PAGE_SIZE rows."""
        views = await run_in_threadpool(self._services.list)
        term = search.strip().lower()
        matching = [view for view in views if _matches(view, term, state)]
        pages = max(1, -(-len(matching) // PAGE_SIZE))
        page = min(max(page, 1), pages)
        shown = matching[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        owners = await run_in_threadpool(self._owners, {v.owner_id for v in shown})
        actor = Actor.of(principal)
        operates = has_permission(principal.role, Permission.SERVICES_OPERATE)
        writes = has_permission(principal.role, Permission.SERVICES_WRITE)
        rows = [
            self._row(
                view,
                owners,
                operates and _manages(actor, view),
                writes and _manages(actor, view) and view.source != "discovered",
            )
            for view in shown
        ]
        awake = sum(1 for v in views if v.state == State.RUNNING.value)
        return Board(
            rows, len(views), len(matching), awake, self._max_awake, operates, page, pages, writes
        )

    async def act(
        self, principal: Principal, name: str, action: Action, context: RequestContext
    ) -> str:
        """Run `action` on service `name` for `principal` (who holds `services:operate`: the
        caller checked it as the API's guard does); a sentence saying what happened."""
        actor = Actor.of(principal)
        view = await run_in_threadpool(self._services.get, name)
        # NotServiceOwner (403) for a developer's button on someone else's service.
        await run_in_threadpool(self._services.check_manages, actor, view.id)
        running = view.state == State.RUNNING.value
        if action is Action.STOP or (action is Action.RESTART and running):
            await run_in_threadpool(self._services.stop, actor, view.id, context)
            # The proxy forgets the endpoint of the stopped container now, not at the next
            # refused connection: the page shows it asleep, and a visit wakes it again.
            self._wakes.forget(view.name)
            if action is Action.STOP:
                return f"{view.name} is stopped."
            view = await run_in_threadpool(self._services.get, name)
        decision = await self._wakes.request(view, principal, context)
        if isinstance(decision, Refused):
            raise _refusal(decision)
        if isinstance(decision, Ready):
            return f"{view.name} is already awake."
        return f"Waking {view.name}."

    def _row(
        self, view: ServiceView, owners: dict[int, str], can_operate: bool, can_edit: bool = False
    ) -> ServiceRow:
        snap = self._wakes.snapshot(view.name)
        running = view.state == State.RUNNING.value
        phase = snap.phase
        if phase is WakePhase.READY and not running:
            phase = WakePhase.ASLEEP  # stopped around this process (the CLI, another worker)
        idle_left: int | None = None
        if phase is WakePhase.READY and snap.last_activity is not None:
            idle_for = (self._clock.now() - snap.last_activity).total_seconds()
            idle_left = max(0, round(view.spec.idle_timeout_s - idle_for))
        owner = owners.get(view.owner_id, "") if view.owner_id is not None else ""
        return ServiceRow(
            name=view.name,
            title=view.spec.display_name or view.name,
            host=f"{view.name}.{self._base_domain}",
            state=view.state,
            phase=phase.value,
            last_activity=snap.last_activity,
            idle_left_s=idle_left,
            idle_timeout_s=view.spec.idle_timeout_s,
            time_to_ready_s=snap.time_to_ready,
            owner=owner or ("discovered" if view.source == "discovered" else "nobody"),
            can_operate=can_operate,
            can_edit=can_edit,
        )

    def _owners(self, ids: Iterable[int | None]) -> dict[int, str]:
        wanted = {i for i in ids if i is not None}
        if not wanted:
            return {}
        with self._factory() as db:
            found = db.execute(select(User.id, User.username).where(User.id.in_(wanted)))
            return {int(row.id): str(row.username) for row in found}


def _manages(actor: Actor, view: ServiceView) -> bool:
    """The ownership rule of `ServiceManager.check_manages`, without a database read per row."""
    return actor.manages_all or (view.owner_id is not None and view.owner_id == actor.user_id)


def _matches(view: ServiceView, term: str, state: str) -> bool:
    if state and view.state != state:
        return False
    if not term:
        return True
    return term in view.name.lower() or term in (view.spec.display_name or "").lower()


def _refusal(refused: Refused) -> Exception:
    """The wake decision's refusal as the error a person reads."""
    if refused.reason is Refusal.TOO_MANY_WAKES:
        return TooManyAttempts(
            refused.retry_after or 60, "This address woke services too often. Wait and retry."
        )
    if refused.reason is Refusal.BUSY:
        return DependencyUnavailable(refused.detail or "WakeDock is busy. Try again shortly.")
    if refused.reason is Refusal.FORBIDDEN:
        return PermissionDenied("The service's access policy does not admit your role.")
    return WakeRefused("Sign in again to wake this service.")
