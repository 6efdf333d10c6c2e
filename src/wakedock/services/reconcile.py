"""Bring the database in line with the engine: at start-up, and on demand (S6.4).

A container removed by hand becomes state `missing` (the next start recreates it); a container
left by an interrupted create is adopted; labelled containers become (or stay) discovered
services. Unlabelled containers are never looked at: the runtime only lists opted-in ones.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import select
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

log = logging.getLogger("wakedock.services")


@dataclass
class ReconcileReport:
    checked: int = 0
    missing: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    discovered: list[str] = field(default_factory=list)
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
        seen = self._discover(workloads, report, context)
        for row in rows:
            if row.source == DISCOVERED and row.container_ref not in seen:
                self._mark_missing(row.id, row.name, report, context)
        return report

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
        self, workloads: list[DiscoveredWorkload], report: ReconcileReport, context: RequestContext
    ) -> set[str]:
        seen: set[str] = set()
        for workload in workloads:
            try:
                spec = spec_from_labels(workload)
            except InvalidLabels as exc:
                report.problems.append(f"{workload.name}: {exc}")
                log.warning("container %s: %s", workload.name, exc)
                continue
            with transaction(self._factory) as db:
                row = db.scalar(select(Service).where(Service.name == spec.name))
                if row is not None and row.source != DISCOVERED:
                    report.problems.append(
                        f"{workload.name}: the name {spec.name!r} belongs to a WakeDock service"
                    )
                    continue
                now = self._clock.now()
                if row is None:
                    # Complete before it is added: the audit append below flushes the session.
                    row = Service(
                        name=spec.name,
                        owner_id=None,
                        source=DISCOVERED,
                        spec=spec_json(spec),
                        writable_root_granted=False,
                        runtime=self._runtime.kind,
                        container_ref=workload.ref,
                        state=workload.state.value,
                        created_at=now,
                        updated_at=now,
                    )
                    db.add(row)
                    event = Event(
                        EventType.SERVICE_DISCOVERED,
                        target=spec.name,
                        details={"container": workload.name, "image": workload.image},
                    )
                    record_event(db, event, context, at=now)
                    report.discovered.append(spec.name)
                row.spec = spec_json(spec)
                row.container_ref = workload.ref
                row.state = workload.state.value
                row.updated_at = now
            seen.add(workload.ref)
        return seen
