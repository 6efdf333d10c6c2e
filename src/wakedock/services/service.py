"""Service rules: ownership, the launch policy, and keeping the database and the engine in step.

Engine calls are slow (a stop waits up to 10 s) and must not hold a database transaction open, so
each operation reads in one short transaction, talks to the engine, then writes in another. A
per-service lock keeps two operations on the same service from interleaving in this process.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.events import Event, EventType, Outcome
from wakedock.audit.service import record_event
from wakedock.clock import Clock
from wakedock.context import RequestContext
from wakedock.db import transaction
from wakedock.runtime.base import (
    ContainerNotFound,
    ContainerRuntime,
    ContainerStats,
    ContainerStatus,
    Endpoint,
    NotManaged,
    State,
)
from wakedock.secrets.references import ServiceSecrets, plain_environment, references
from wakedock.services.depends_on import check_dependencies
from wakedock.services.errors import (
    ConfiguredByLabels,
    InvalidServiceSpec,
    NotServiceOwner,
    PolicyRefused,
    ServiceExists,
    ServiceInUse,
    ServiceNotFound,
)
from wakedock.services.grace import StopGrace
from wakedock.services.launch import launch_of
from wakedock.services.loading_page import TemplateFiles, check_template
from wakedock.services.models import Service
from wakedock.services.patch import ServicePatch
from wakedock.services.policy import PolicySettings, Violation, with_writable_root_rule
from wakedock.services.snapshots import Actor, ServiceView, spec_json
from wakedock.services.spec import ServiceSpec

API = "api"
DISCOVERED = "discovered"
# Stored while a stop waits its grace (edge.stop_grace_seconds): the container still runs, but
# the edge no longer routes to it.
STOPPING = "stopping"

# Told of each committed change made through a manager: the service's name and its record now
# (None once removed).
ServiceChanged = Callable[[str, ServiceView | None], None]


class ServiceManager:
    """Create, change, start, stop and remove services for an actor, audited."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        clock: Clock,
        runtime: ContainerRuntime,
        policy: PolicySettings,
        secrets: ServiceSecrets,
        *,
        stop_grace: StopGrace | None = None,
        templates: TemplateFiles | None = None,
    ) -> None:
        """`stop_grace`: with the edge's direct routes, a stop stores the service as stopping
        and waits that grace (when an edge is attached) before stopping its container, so the
        edge drops the route first (services/grace.py, docs/edge.md). `templates`: where custom
        loading-page templates are checked (the files API's store); without it a custom theme
        is refused."""
        self._factory = factory
        self._templates = templates
        self._stop_grace = stop_grace
        self._clock = clock
        self._runtime = runtime
        self._policy = policy
        self._secrets = secrets
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._listeners: builtins.list[ServiceChanged] = []

    def on_change(self, listener: ServiceChanged) -> None:
        """Call `listener` after each change this manager commits (create, update, delete,
        start, stop), in the thread that made it: the proxy's host map follows a change made
        through the API at once instead of at its next poll of the database. A listener must
        be quick and must not raise."""
        self._listeners.append(listener)

    def _changed(self, name: str, view: ServiceView | None) -> None:
        for listener in self._listeners:
            listener(name, view)

    # -- reading ---------------------------------------------------------------------------

    def list(self) -> list[ServiceView]:
        """Every service, by name. Anyone with `services:read` sees them all."""
        with transaction(self._factory) as db:
            rows = db.scalars(select(Service).order_by(Service.name)).all()
            return [ServiceView.of(row) for row in rows]

    def change_marker(self) -> tuple[object, ...]:
        """A cheap fingerprint of the services (one aggregate query): it moves when one is
        created, changed, deleted, started or stopped, or found in another state by the
        reconciler (which touches no timestamp: the sum of the running services' ids). The edge
        polls it to reload at once."""
        running = case((Service.state == State.RUNNING.value, Service.id), else_=0)
        with self._factory() as db:
            return tuple(
                db.execute(
                    select(
                        func.count(Service.id),
                        func.max(Service.updated_at),
                        func.max(Service.last_started_at),
                        func.max(Service.last_stopped_at),
                        func.sum(running),
                    )
                ).one()
            )

    def get(self, key: int | str) -> ServiceView:
        """A service by id or by name; ServiceNotFound (404) otherwise."""
        with transaction(self._factory) as db:
            return ServiceView.of(self._row(db, key))

    def status(self, key: int | str) -> tuple[ServiceView, ContainerStatus | None]:
        """The stored record and what the engine says now (None when the container is gone)."""
        view = self.get(key)
        if view.container_ref is None:
            return view, None
        try:
            return view, self._runtime.status(view.container_ref)
        except ContainerNotFound:
            return view, None

    def stats(self, key: int | str) -> ContainerStats:
        """A usage sample (CPU %, memory, network); readable by anyone who can read services."""
        return self._runtime.stats(self._ref(self.get(key)))

    @property
    def runtime_kind(self) -> str:
        """The kind of container runtime the services run on (`engine`, `swarm`)."""
        return self._runtime.kind

    def engine_status(self, view: ServiceView) -> ContainerStatus:
        """What the engine says of the service's container now, without a database read (the
        proxy asks it while a wake is probing)."""
        return self._runtime.status(self._ref(view))

    def endpoint(self, view: ServiceView, container_port: int) -> Endpoint:
        """Where the proxy reaches `container_port` of the running service (host, port);
        InvalidState while the port is not published (a container restarting)."""
        return self._runtime.endpoint(self._ref(view), container_port)

    def inspect(self, view: ServiceView) -> builtins.list[dict[str, Any]]:
        """The engine's own description of the service's containers (for the CIS checks)."""
        return self._runtime.inspect(self._ref(view))

    def logs(self, actor: Actor, key: int | str, tail: int) -> str:
        view = self._managed_by(actor, self.get(key))
        return self._runtime.logs(self._ref(view), tail)

    def check_manages(self, actor: Actor, key: int | str) -> None:
        """NotServiceOwner unless `actor` may manage the service (ServiceNotFound if none)."""
        self._managed_by(actor, self.get(key))

    # -- changing --------------------------------------------------------------------------

    def create(
        self, actor: Actor, spec: ServiceSpec, context: RequestContext, *, owner_id: int | None
    ) -> ServiceView:
        """Check, create the (stopped) hardened container, then record the service."""
        with self._lock(spec.name):
            with transaction(self._factory) as db:
                if db.scalar(select(Service.id).where(Service.name == spec.name)) is not None:
                    raise ServiceExists("a service with this name already exists")
                check_dependencies(db, spec)
            granted = self._check_policy(actor, spec, context, already_granted=False)
            self._check_loading_page(spec)
            self._secrets.check(actor, spec, context)
            ref = self._create_container(spec, granted, plain_environment(spec))
            now = self._clock.now()
            row = Service(
                name=spec.name,
                owner_id=owner_id,
                source=API,
                spec=spec_json(spec),
                writable_root_granted=granted,
                runtime=self._runtime.kind,
                container_ref=ref,
                state=State.STOPPED.value,
                created_at=now,
                updated_at=now,
            )
            try:
                with transaction(self._factory) as db:
                    db.add(row)
                    db.flush()
                    self._audit_change(db, EventType.SERVICE_CREATE, actor, row, context, granted)
                    view = ServiceView.of(row)
            except IntegrityError:
                self._runtime.remove(ref)
                raise ServiceExists("a service with this name already exists") from None
            self._changed(view.name, view)
            return view

    def update(
        self, actor: Actor, key: int | str, patch: ServicePatch, context: RequestContext
    ) -> ServiceView:
        """Apply a partial change; the container is recreated (and restarted if it ran)."""
        current = self._managed_by(actor, self.get(key))
        if current.source == DISCOVERED:
            raise ConfiguredByLabels("this service is configured by its container's labels")
        spec = patch.applied_to(current.spec)
        with self._lock(current.name):
            with transaction(self._factory) as db:
                check_dependencies(db, spec)
            granted = self._check_policy(
                actor, spec, context, already_granted=current.writable_root_granted
            )
            self._check_loading_page(spec)
            self._secrets.check(actor, spec, context, previous=current.spec)
            was_running = self._live_state(current) == State.RUNNING
            # Secrets are read before the running container goes: a missing one leaves it be.
            environment = self._environment(spec, context if was_running else None)
            if current.container_ref is not None:
                self._runtime.remove(current.container_ref)
            ref = self._create_container(spec, granted, environment)
            if was_running:
                self._runtime.start(ref)
            with transaction(self._factory) as db:
                row = self._row(db, current.id)
                row.spec = spec_json(spec)
                row.writable_root_granted = granted
                row.container_ref = ref
                row.state = State.RUNNING.value if was_running else State.STOPPED.value
                row.updated_at = self._clock.now()
                fresh_grant = granted and not current.writable_root_granted
                self._audit_change(db, EventType.SERVICE_UPDATE, actor, row, context, fresh_grant)
                view = ServiceView.of(row)
            self._changed(view.name, view)
            return view

    def delete(self, actor: Actor, key: int | str, context: RequestContext) -> None:
        """Remove the container and the record; refused while other services depend on it.

        A discovered service is removed only once its container is gone or no longer opted in
        (its owner's container is never removed by WakeDock); while the labelled container
        exists, the next reconciliation would bring the service back.
        """
        current = self._managed_by(actor, self.get(key))
        discovered = current.source == DISCOVERED
        if discovered and self._live_state(current) != State.MISSING:
            raise ConfiguredByLabels(
                "a discovered service is configured by its container's labels: remove the "
                "container or its wakedock.enable label first, then remove the service"
            )
        with self._lock(current.name):
            dependents = [v.name for v in self.list() if current.name in v.spec.depends_on]
            if dependents:
                raise ServiceInUse(
                    f"{', '.join(dependents)} depend on {current.name}",
                    extra={"dependents": dependents},
                )
            if current.container_ref is not None and not discovered:
                self._runtime.remove(current.container_ref)
            with transaction(self._factory) as db:
                row = self._row(db, current.id)
                db.delete(row)
                deleted = Event(
                    EventType.SERVICE_DELETE, target=current.name, details={"source": row.source}
                )
                self._record(db, deleted, context)
            self._changed(current.name, None)

    def start(self, actor: Actor, key: int | str, context: RequestContext) -> ServiceView:
        """Start the service's container, recreating it first if it was removed by hand."""
        return self._start(self._managed_by(actor, self.get(key)), context, "manual")

    def wake(self, key: int | str, context: RequestContext) -> ServiceView:
        """Start a service for a visitor its access policy admitted (the proxy's wake)."""
        return self._start(self.get(key), context, "wake")

    def _start(self, current: ServiceView, context: RequestContext, trigger: str) -> ServiceView:
        with self._lock(current.name):
            ref = current.container_ref
            state = self._live_state(current)
            if state == State.MISSING and current.source == DISCOVERED:
                raise ContainerNotFound("the discovered container no longer exists")
            # Secrets are read at every start (a paused container keeps its memory instead):
            # a stopped container that needs them is made again with the current values.
            relaunch = state == State.STOPPED and bool(references(current.spec))
            if ref is None or state == State.MISSING or relaunch:
                environment = self._environment(current.spec, context)
                if ref is not None and relaunch:
                    self._runtime.remove(ref)
                ref = self._create_container(
                    current.spec, current.writable_root_granted, environment
                )
            self._runtime.start(ref)
            return self._mark(
                current.id, ref, State.RUNNING, None, EventType.SERVICE_START, context, trigger
            )

    def stop(
        self, actor: Actor, key: int | str, context: RequestContext, *, reason: str = "manual"
    ) -> ServiceView:
        """Stop (or pause, per the spec's stop method) the service's container."""
        return self._stop(self._managed_by(actor, self.get(key)), context, reason)

    def stop_idle(self, key: int | str, context: RequestContext) -> ServiceView:
        """Stop a service nobody used for its idle timeout (the proxy's idle stop, a system
        operation: no user acts, `context` names the system actor)."""
        return self._stop(self.get(key), context, "idle")

    def _stop(self, current: ServiceView, context: RequestContext, reason: str) -> ServiceView:
        with self._lock(current.name):
            pause = current.spec.stop_method == "pause"
            ref = self._ref(current)
            stop_grace = self._stop_grace
            grace = stop_grace is not None and current.state == State.RUNNING.value
            if stop_grace is not None and grace:
                self._mark_stopping(current.id)
                # Asked only now that the row says stopping: an edge registering from here on
                # renders without the route (edge/presence.py). No edge: no wait. Blocking on
                # purpose: a stop runs in a worker thread, under this service's lock (a wake
                # waits for it, then starts the service again).
                stop_grace.wait()
            try:
                self._runtime.stop(ref, pause=pause)
            except Exception:
                if grace:  # still running: routable again
                    self._restore_running(current.id)
                raise
            state = State.PAUSED if pause and self._runtime.kind == "engine" else State.STOPPED
            return self._mark(
                current.id, current.container_ref, state, reason, EventType.SERVICE_STOP, context
            )

    def _mark_stopping(self, service_id: int) -> None:
        """Store the service as stopping; its stop time moves too, so whoever polls the change
        marker (the host map, the edge) sees the change."""
        with transaction(self._factory) as db:
            row = self._row(db, service_id)
            row.state = STOPPING
            row.last_stopped_at = self._clock.now()
            view = ServiceView.of(row)
        self._changed(view.name, view)

    def _restore_running(self, service_id: int) -> None:
        with transaction(self._factory) as db:
            row = self._row(db, service_id)
            row.state = State.RUNNING.value
            row.last_stopped_at = self._clock.now()
            view = ServiceView.of(row)
        self._changed(view.name, view)

    def mark_error(self, key: int | str) -> None:
        """Record that the last start failed (stop reason `error`); the next start may retry."""
        with transaction(self._factory) as db:
            row = self._row(db, key)
            row.stop_reason = "error"
            row.last_stopped_at = self._clock.now()

    def audit(self, event: Event, context: RequestContext) -> None:
        """Record an event in a transaction of its own (e.g. a failed wake)."""
        with transaction(self._factory) as db:
            self._record(db, event, context)

    # -- helpers ---------------------------------------------------------------------------

    @contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        with self._locks_guard:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            yield

    def _row(self, db: Session, key: int | str) -> Service:
        column = Service.id if isinstance(key, int) else Service.name
        row = db.scalar(select(Service).where(column == key))
        if row is None:
            raise ServiceNotFound("no such service")
        return row

    def _ref(self, view: ServiceView) -> str:
        if view.container_ref is None:
            raise ContainerNotFound("the service has no container: start it to create one")
        return view.container_ref

    def _live_state(self, view: ServiceView) -> State:
        """The engine's state; MISSING when the container is gone, or no longer WakeDock's to
        operate (a discovered container that lost its opt-in label)."""
        if view.container_ref is None:
            return State.MISSING
        try:
            return self._runtime.status(view.container_ref).state
        except (ContainerNotFound, NotManaged):
            return State.MISSING

    def _managed_by(self, actor: Actor, view: ServiceView) -> ServiceView:
        """Developers manage only the services they own; operators and admins manage all."""
        if actor.manages_all or (view.owner_id is not None and view.owner_id == actor.user_id):
            return view
        raise NotServiceOwner("you can only manage services you own")

    def policy_violations(
        self, actor: Actor, spec: ServiceSpec, *, already_granted: bool = False
    ) -> builtins.list[Violation]:
        """Every launch-policy violation of `spec` for `actor`, refusing nothing and auditing
        nothing: what the dashboard's form shows beside a spec's validation errors, so that one
        round lists both. `create` and `update` judge (and audit) again when it is saved."""
        return with_writable_root_rule(
            spec, self._policy, admin=actor.is_admin, already_granted=already_granted
        )[1]

    def image_present(self, image: str) -> bool:
        """Whether the engine has `image` already: `create` refuses one it has not
        (`image_missing`, WakeDock never pulls); a form asks first to list it with the rest."""
        return self._runtime.has_image(image)

    def _check_policy(
        self, actor: Actor, spec: ServiceSpec, context: RequestContext, *, already_granted: bool
    ) -> bool:
        """Raise PolicyRefused (audited) listing every violation; return the writable-root grant
        (see policy.with_writable_root_rule)."""
        granted, found = with_writable_root_rule(
            spec, self._policy, admin=actor.is_admin, already_granted=already_granted
        )
        if found:
            refused = Event(
                EventType.POLICY_VIOLATION,
                Outcome.DENIED,
                target=spec.name,
                details={"violations": [f"{v.field}: {v.rule}" for v in found]},
            )
            self.audit(refused, context)
            raise PolicyRefused(found)
        return granted

    def _check_loading_page(self, spec: ServiceSpec) -> None:
        """A custom loading page's template exists, fits and parses (InvalidServiceSpec)."""
        if spec.loading_page.theme == "custom" and self._templates is None:
            raise InvalidServiceSpec("loading_page.template: custom templates are not available")
        if self._templates is not None:
            check_template(self._templates, spec.loading_page)

    def _environment(self, spec: ServiceSpec, launch: RequestContext | None) -> dict[str, str]:
        """For a `launch` (a start follows) the secret references read now; otherwise the
        environment without the secret variables."""
        return self._secrets.resolve(spec, launch) if launch else plain_environment(spec)

    def _create_container(
        self, spec: ServiceSpec, writable_root: bool, environment: dict[str, str]
    ) -> str:
        # A container left behind by an interrupted create (ours, same service) would block the
        # name: remove it first.
        stale = self._runtime.find(spec.name)
        if stale is not None:
            self._runtime.remove(stale)
        policy = replace(self._policy, allow_writable_root=writable_root)
        return self._runtime.create(launch_of(spec, environment, policy))

    def _mark(
        self,
        service_id: int,
        ref: str | None,
        state: State,
        reason: str | None,
        event_type: EventType,
        context: RequestContext,
        trigger: str | None = None,
    ) -> ServiceView:
        with transaction(self._factory) as db:
            row = self._row(db, service_id)
            now = self._clock.now()
            row.container_ref = ref
            row.state = state.value
            row.stop_reason = reason
            if event_type is EventType.SERVICE_START:
                row.last_started_at = now
            else:
                row.last_stopped_at = now
            details = {"reason": reason} if reason else {}
            if trigger:
                details["trigger"] = trigger
            self._record(db, Event(event_type, target=row.name, details=details), context)
            view = ServiceView.of(row)
        self._changed(view.name, view)
        return view

    def _audit_change(
        self,
        db: Session,
        event_type: EventType,
        actor: Actor,
        row: Service,
        context: RequestContext,
        granted_now: bool,
    ) -> None:
        details = {"image": ServiceSpec.model_validate_json(row.spec).image}
        self._record(db, Event(event_type, target=row.name, details=details), context)
        if granted_now:
            relaxed = Event(
                EventType.POLICY_RELAXATION,
                target=row.name,
                details={"relaxation": "writable_root", "granted_by": actor.name},
            )
            self._record(db, relaxed, context)

    def _record(self, db: Session, event: Event, context: RequestContext) -> None:
        record_event(db, event, context, at=self._clock.now())
