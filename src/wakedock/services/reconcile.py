"""Bring the database in line with the engine: at start-up, on demand, and live (S6.4).

A container removed by hand becomes state `missing` (the next start recreates it); a container
left by an interrupted create is adopted; labelled containers become (or stay) discovered
services, follow their labels when they change (a container recreated with new ones), and go
away with their container (or its opt-in label). Unlabelled containers are never looked at: the
runtime only lists opted-in ones.

`run` compares everything (start-up, `wakedock service reconcile`, after the engine's event
stream was lost); `sync` only the workloads the engine's events named (services/watch.py). Both
go through `_discover` and `_retire`: one rule for the CLI and for live discovery. Every write
is idempotent and guarded by the database (a unique service name, a row deleted once), so two
processes reconciling at the same time record each change once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import CursorResult, Result, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.events import Event, EventType, Outcome
from wakedock.audit.service import record_event
from wakedock.clock import Clock
from wakedock.context import RequestContext
from wakedock.db import transaction
from wakedock.runtime.base import ContainerNotFound, ContainerRuntime, DiscoveredWorkload, State
from wakedock.services.discovery import InvalidLabels, spec_from_labels
from wakedock.services.models import Service
from wakedock.services.service import API, DISCOVERED
from wakedock.services.snapshots import spec_json
from wakedock.services.spec import ServiceSpec

log = logging.getLogger("wakedock.services")


@dataclass
class ReconcileReport:
    checked: int = 0
    missing: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    discovered: list[str] = field(default_factory=list)
    # Discovered services whose labels changed, and those gone with their container.
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    # "<container>: <reason>" for labelled containers WakeDock could not take on.
    problems: list[str] = field(default_factory=list)


class Reconciler:
    def __init__(
        self, factory: sessionmaker[Session], clock: Clock, runtime: ContainerRuntime
    ) -> None:
        self._factory = factory
        self._clock = clock
        self._runtime = runtime

    def run(self, context: RequestContext) -> ReconcileReport:
        """Reconcile every service; RuntimeUnavailable propagates (the caller decides)."""
        report = ReconcileReport()
        workloads = self._runtime.discover()
        with transaction(self._factory) as db:
            rows = list(db.scalars(select(Service)))
        for row in rows:
            report.checked += 1
            if row.source == API:
                self._check_api_service(row.id, row.name, row.container_ref, report, context)
        seen = self._discover(workloads, report, context, full=True)
        self._retire_stale(seen, None, report, context)
        return report

    def sync(self, refs: Iterable[str], context: RequestContext) -> ReconcileReport:
        """Reconcile the discovered services of the workloads `refs` only (those the engine's
        events named): discovered, changed, or gone. RuntimeUnavailable propagates."""
        wanted = set(refs)
        report = ReconcileReport()
        workloads = [w for ref in sorted(wanted) if (w := self._runtime.discovered(ref))]
        seen = self._discover(workloads, report, context, full=False)
        self._retire_stale(seen, wanted, report, context)
        return report

    def _retire_stale(
        self,
        seen: dict[str, str],
        scope: set[str] | None,
        report: ReconcileReport,
        context: RequestContext,
    ) -> None:
        """Retire each discovered service (of the refs in `scope`, or all) whose workload is
        gone, no longer opted in, invalid now, or names another service (a renamed one)."""
        with transaction(self._factory) as db:
            rows = db.execute(
                select(Service.id, Service.name, Service.container_ref).where(
                    Service.source == DISCOVERED
                )
            ).all()
        for service_id, name, ref in rows:
            if scope is not None and ref not in scope:
                continue
            if ref is None or seen.get(ref) != name:
                self._retire(service_id, name, report, context)

    def _retire(
        self, service_id: int, name: str, report: ReconcileReport, context: RequestContext
    ) -> None:
        """Remove a discovered service whose container went away; one other services depend
        on stays, as `missing`, until they no longer do (or its container is back)."""
        with transaction(self._factory) as db:
            row = db.get(Service, service_id)
            if row is None or row.source != DISCOVERED:
                return
            dependents = sorted(
                other.name
                for other in db.scalars(select(Service).where(Service.id != service_id))
                if name in ServiceSpec.model_validate_json(other.spec).depends_on
            )
            if dependents:
                if row.state != State.MISSING.value:
                    report.problems.append(
                        f"{name}: gone, but {', '.join(dependents)} depend on it"
                    )
            else:
                gone = delete(Service).where(Service.id == service_id)
                if not _rows(db.execute(gone.execution_options(synchronize_session=False))):
                    return  # another process removed it first (and audited it)
                event = Event(
                    EventType.SERVICE_DELETE,
                    target=name,
                    details={
                        "source": DISCOVERED,
                        "reason": "its container was removed or no longer opted in",
                    },
                )
                record_event(db, event, context, at=self._clock.now())
        if dependents:
            self._mark_missing(service_id, name, report, context)
            return
        report.removed.append(name)
        log.info("service %s: removed with its discovered container", name)

    def _check_api_service(
        self,
        service_id: int,
        name: str,
        ref: str | None,
        report: ReconcileReport,
        context: RequestContext,
    ) -> None:
        state: State | None = None
        if ref is not None:
            try:
                state = self._runtime.status(ref).state
            except ContainerNotFound:
                ref = None
        if ref is None:
            # Left behind by a create whose database write never happened, or by a restore.
            ref = self._runtime.find(name)
            if ref is None:
                self._mark_missing(service_id, name, report, context)
                return
            state = self._runtime.status(ref).state
            report.adopted.append(name)
        with transaction(self._factory) as db:
            row = db.get(Service, service_id)
            if row is not None and state is not None:
                row.container_ref = ref
                row.state = state.value

    def _mark_missing(
        self, service_id: int, name: str, report: ReconcileReport, context: RequestContext
    ) -> None:
        with transaction(self._factory) as db:
            row = db.get(Service, service_id)
            if row is None or row.state == State.MISSING.value:
                return
            row.container_ref = None if row.source == API else row.container_ref
            row.state = State.MISSING.value
            row.stop_reason = "missing"
            event = Event(
                EventType.SERVICE_MISSING,
                Outcome.FAILURE,
                target=name,
                details={"hint": "the container was removed outside WakeDock"},
            )
            record_event(db, event, context, at=self._clock.now())
        report.missing.append(name)
        log.warning("service %s: its container is gone; the next start recreates it", name)

    def _discover(
        self,
        workloads: list[DiscoveredWorkload],
        report: ReconcileReport,
        context: RequestContext,
        *,
        full: bool,
    ) -> dict[str, str]:
        """Create or update the discovered service of each valid workload; returns the
        service name of each ref taken on. `full`: also store each engine state (a full run);
        otherwise a row is written only when its labels or its container changed."""
        seen: dict[str, str] = {}
        for workload in workloads:
            try:
                spec = spec_from_labels(workload)
            except InvalidLabels as exc:
                report.problems.append(f"{workload.name}: {exc}")
                log.warning("container %s: %s", workload.name, exc)
                continue
            try:
                if self._take_on(workload, spec, report, context, full=full):
                    seen[workload.ref] = spec.name
            except IntegrityError:
                # Another process discovered it at the same moment (and audited it).
                if spec.name in report.discovered:
                    report.discovered.remove(spec.name)
                seen[workload.ref] = spec.name
        return seen

    def _take_on(
        self,
        workload: DiscoveredWorkload,
        spec: ServiceSpec,
        report: ReconcileReport,
        context: RequestContext,
        *,
        full: bool,
    ) -> bool:
        with transaction(self._factory) as db:
            row = db.scalar(select(Service).where(Service.name == spec.name))
            if row is not None and row.source != DISCOVERED:
                problem = f"the name {spec.name!r} belongs to a WakeDock service"
                report.problems.append(f"{workload.name}: {problem}")
                log.warning("container %s: %s", workload.name, problem)
                return False
            now = self._clock.now()
            stored = spec_json(spec)
            details = {"container": workload.name, "image": workload.image}
            if row is None:
                # Complete before it is added: the audit append below flushes the session.
                row = Service(
                    name=spec.name,
                    owner_id=None,
                    source=DISCOVERED,
                    spec=stored,
                    writable_root_granted=False,
                    runtime=self._runtime.kind,
                    container_ref=workload.ref,
                    state=workload.state.value,
                    created_at=now,
                    updated_at=now,
                )
                db.add(row)
                event = Event(EventType.SERVICE_DISCOVERED, target=spec.name, details=details)
                record_event(db, event, context, at=now)
                report.discovered.append(spec.name)
                return True
            changed = row.spec != stored
            moved = row.container_ref != workload.ref
            if changed:
                # Compare and set: of two processes applying the same change, one audits it.
                swap = (
                    update(Service)
                    .where(Service.id == row.id, Service.spec == row.spec)
                    .values(spec=stored)
                    .execution_options(synchronize_session=False)
                )
                changed = _rows(db.execute(swap)) == 1
                if changed:
                    event = Event(EventType.SERVICE_UPDATE, target=spec.name, details=details)
                    record_event(db, event, context, at=now)
                    report.updated.append(spec.name)
            if moved or full:
                row.container_ref = workload.ref
                row.state = workload.state.value
                if moved and row.stop_reason == "missing":
                    row.stop_reason = None
            if changed or moved or full:
                row.updated_at = now
        return True


def _rows(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE touched (SQLAlchemy types execute() as a plain Result)."""
    return int(cast("CursorResult[Any]", result).rowcount)
