"""A service's page: what it is (its spec, read-only), how it runs (the hardening the engine
applied, the CIS checks), how it behaves (time to ready, requests per minute, CPU and memory),
its log tail, its audit events and its secret references. Testable without HTTP.

Every read is the API's own: `ServiceManager.get / status / inspect / logs` (the log tail with
the ownership rule of `GET /api/v1/services/{id}/logs`), the audit query of `GET /api/v1/audit`
filtered to the service (`audit.export.page_events`), the secret references of the spec
(`secrets.references`: names only; values are read at a container's start and never stored).
"""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from wakedock.audit.export import AuditFilter, AuditRecord, page_events
from wakedock.auth.models import User
from wakedock.auth.sessions import Principal
from wakedock.clock import Clock
from wakedock.dashboard.applied import Applied, applied
from wakedock.dashboard.charts import Chart, bar_chart, line_chart
from wakedock.dashboard.usage import Sample, UsageSamples
from wakedock.errors import WakeDockError
from wakedock.proxy.activity import ActivityTracker
from wakedock.proxy.wake import WakeCoordinator
from wakedock.rbac.permissions import Permission
from wakedock.rbac.roles import has_permission
from wakedock.runtime.base import State
from wakedock.secrets.references import references
from wakedock.services.service import ServiceManager
from wakedock.services.snapshots import Actor, ServiceView, WakePhase
from wakedock.services.wake_history import Wake, WakeHistory

AUDIT_PAGE = 20
# The log tail: its last lines, each cut at a length (an app may print anything).
LOG_LINES = 200
LOG_LINE_CHARS = 2000
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_CONTROL = dict.fromkeys([*range(0x09), *range(0x0B, 0x20), 0x7F], "\ufffd")


@dataclass(frozen=True)
class SecretReference:
    """An environment variable that names a secret (never its value)."""

    variable: str
    path: str
    key: str


@dataclass(frozen=True)
class LivePart:
    """What the page refreshes while open: state, wake phase, timers, and the charts."""

    state: str
    phase: str
    last_activity: datetime | None
    idle_left_s: int | None
    time_to_ready_s: float | None
    open_connections: int
    charts: list[Chart]


@dataclass(frozen=True)
class ServiceDetail:
    view: ServiceView
    title: str
    host: str
    owner: str
    spec_text: str
    live: LivePart
    applied: Applied | None
    # Why there is no hardening to show (no container yet, engine unreachable).
    engine_note: str
    secrets: list[SecretReference]
    # The user may operate it (the buttons) and read its logs: the API's rule for both.
    operates: bool
    logs: list[str] | None
    logs_note: str
    # None: the role may not read the audit trail (`audit:read`).
    audit: list[AuditRecord] | None
    audit_next: int | None


@dataclass(frozen=True)
class _Reads:
    """What a page reads in its worker thread."""

    view: ServiceView
    operates: bool
    applied: Applied | None
    engine_note: str
    logs: list[str] | None
    logs_note: str
    audit: list[AuditRecord] | None
    owner: str
    wakes: list[Wake]


def log_lines(text: str) -> list[str]:
    """The last LOG_LINES lines of `text`, each at most LOG_LINE_CHARS, colour codes dropped and
    other control characters shown as U+FFFD (the page escapes the rest)."""
    lines = text.splitlines()[-LOG_LINES:]
    return [_ANSI.sub("", line).translate(_CONTROL)[:LOG_LINE_CHARS] for line in lines]


class ServiceDetails:
    """The reads of a service's page, for one signed-in principal at a time."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        services: ServiceManager,
        wakes: WakeCoordinator,
        activity: ActivityTracker,
        history: WakeHistory,
        samples: UsageSamples,
        clock: Clock,
        *,
        base_domain: str,
    ) -> None:
        self._factory = factory
        self._services = services
        self._wakes = wakes
        self._activity = activity
        self._history = history
        self._samples = samples
        self._clock = clock
        self._base_domain = base_domain

    async def page(
        self, principal: Principal, name: str, audit_before: int | None = None
    ) -> ServiceDetail:
        """Everything the page shows; ServiceNotFound (404) for an unknown name. The blocking
        reads run in one worker thread, one after the other; the wake state and the traffic
        are read here, on the event loop that keeps them."""
        read = await run_in_threadpool(self._read, principal, name, audit_before)
        view = read.view
        return ServiceDetail(
            view=view,
            title=view.spec.display_name or view.name,
            host=f"{view.name}.{self._base_domain}",
            owner=read.owner,
            spec_text=json.dumps(view.spec.model_dump(mode="json"), indent=2, sort_keys=True),
            live=self._live(view, read.wakes),
            applied=read.applied,
            engine_note=read.engine_note,
            secrets=[
                SecretReference(variable, path, key)
                for variable, (path, key) in sorted(references(view.spec).items())
            ],
            operates=read.operates,
            logs=read.logs,
            logs_note=read.logs_note,
            audit=read.audit,
            audit_next=(
                read.audit[-1].seq if read.audit and len(read.audit) == AUDIT_PAGE else None
            ),
        )

    async def live(self, view: ServiceView) -> LivePart:
        """The refreshed part, after a CPU and memory sample when one is due (usage.py: the
        page's poll is what samples)."""

        def read() -> list[Wake]:
            self._samples.sample(view)
            return self._history.recent(view.id)

        return self._live(view, await run_in_threadpool(read))

    def _live(self, view: ServiceView, wakes: list[Wake]) -> LivePart:
        """On the event loop: the wake coordinator's and the traffic's state live there."""
        snap = self._wakes.snapshot(view.name)
        phase = snap.phase
        running = view.state == State.RUNNING.value
        if phase is WakePhase.READY and not running:
            phase = WakePhase.ASLEEP  # stopped around this process (the CLI, another worker)
        idle_left: int | None = None
        if phase is WakePhase.READY and snap.last_activity is not None:
            idle_for = (self._clock.now() - snap.last_activity).total_seconds()
            idle_left = max(0, round(view.spec.idle_timeout_s - idle_for))
        charts = [
            _wake_chart(wakes),
            _requests_chart(self._activity.requests_per_minute(view.name), self._clock.now()),
            *_usage_charts(self._samples.of(view.name)),
        ]
        return LivePart(
            state=view.state,
            phase=phase.value,
            last_activity=snap.last_activity,
            idle_left_s=idle_left,
            time_to_ready_s=snap.time_to_ready,
            open_connections=snap.open_connections,
            charts=charts,
        )

    async def view(self, name: str) -> ServiceView:
        """The stored service; ServiceNotFound (404) for an unknown name."""
        return await run_in_threadpool(self._services.get, name)

    async def log_tail(self, principal: Principal, name: str) -> list[str]:
        """The last lines of the service's log, for a principal holding `services:operate`
        (the caller checked it as the API's guard does); NotServiceOwner (403) for a
        developer's look at someone else's service, as the API answers."""
        text = await run_in_threadpool(self._services.logs, Actor.of(principal), name, LOG_LINES)
        return log_lines(text)

    def _read(self, principal: Principal, name: str, audit_before: int | None) -> _Reads:
        view = self._services.get(name)
        actor = Actor.of(principal)
        # The API's rules: logs need services:operate and the ownership rule; the audit trail
        # audit:read. Not holding them hides the section (nothing asked, nothing audited).
        operates = has_permission(principal.role, Permission.SERVICES_OPERATE) and (
            actor.manages_all or (view.owner_id is not None and view.owner_id == actor.user_id)
        )
        found, note = self._engine(view)
        logs, logs_note = None, "Only the service's owner and operators read its logs."
        if operates:
            logs, logs_note = self._logs_or_note(actor, view)
        audit = None
        if has_permission(principal.role, Permission.AUDIT_READ):
            audit = self._audit(view.name, audit_before)
        return _Reads(
            view, operates, found, note, logs, logs_note, audit, self._owner(view),
            self._history.recent(view.id),
        )  # fmt: skip

    def _logs_or_note(self, actor: Actor, view: ServiceView) -> tuple[list[str], str]:
        if view.container_ref is None:
            return [], "No container yet: its log starts with its first wake."
        try:
            text = self._services.logs(actor, view.id, LOG_LINES)
        except WakeDockError as exc:
            return [], f"The log cannot be read now: {exc.detail}."
        return log_lines(text), ""

    def _engine(self, view: ServiceView) -> tuple[Applied | None, str]:
        if view.container_ref is None:
            return None, "No container yet: WakeDock creates it at the service's first start."
        try:
            attrs = self._services.inspect(view)
        except WakeDockError as exc:
            return None, f"The engine cannot tell now: {exc.detail}."
        if not attrs:
            return None, "The engine has no container for this service now."
        return applied(attrs[0]), ""

    def _audit(self, name: str, before: int | None) -> list[AuditRecord]:
        return page_events(
            self._factory, AuditFilter(target=name), limit=AUDIT_PAGE, after=before,
            newest_first=True,
        )  # fmt: skip

    def _owner(self, view: ServiceView) -> str:
        if view.owner_id is None:
            return "discovered" if view.source == "discovered" else "nobody"
        with self._factory() as db:
            found = db.scalar(select(User.username).where(User.id == view.owner_id))
        return str(found) if found else "nobody"


def _seconds(value: float) -> str:
    return f"{value:.2f} s"


def _wake_chart(wakes: list[Wake]) -> Chart:
    values = [wake.seconds for wake in wakes]
    if not values:
        summary = "No wake recorded yet."
    else:
        summary = (
            f"{len(values)} wake{'s' if len(values) != 1 else ''}: the last took "
            f"{_seconds(values[-1])}, the median {_seconds(statistics.median(values))}, "
            f"the slowest {_seconds(max(values))}."
        )
    labels = [f"{w.ready_at:%Y-%m-%d %H:%M} UTC: {_seconds(w.seconds)}" for w in wakes]
    return bar_chart(
        "wakes", "Time to ready, last wakes", values, labels, "s", summary,
        first_label=f"{wakes[0].ready_at:%m-%d %H:%M}" if wakes else "",
        last_label=f"{wakes[-1].ready_at:%m-%d %H:%M}" if wakes else "",
    )  # fmt: skip


def _requests_chart(counts: list[int], now: datetime) -> Chart:
    total = sum(counts)
    plural = "s" if total != 1 else ""
    busiest = f"; the busiest minute had {max(counts)}." if total else "."
    summary = f"{total} request{plural} in the last {len(counts)} minutes{busiest}"
    start = now - timedelta(minutes=len(counts) - 1)
    labels = [
        f"{start + timedelta(minutes=i):%H:%M} UTC: {count} request{'s' if count != 1 else ''}"
        for i, count in enumerate(counts)
    ]
    return bar_chart(
        "requests", "Requests per minute, last hour", [float(c) for c in counts], labels, "/min",
        summary, first_label=f"{start:%H:%M}", last_label=f"{now:%H:%M} UTC",
    )  # fmt: skip


def _usage_charts(samples: list[Sample]) -> list[Chart]:
    if not samples:
        note = "No sample yet: one is taken every 5 s while it runs and this page is open."
        return [
            line_chart("cpu", "CPU while awake", [], "%", note),
            line_chart("memory", "Memory while awake", [], "MiB", note),
        ]
    first, last = f"{samples[0].at:%H:%M:%S}", f"{samples[-1].at:%H:%M:%S} UTC"
    cpu = [s.cpu_percent for s in samples]
    memory = [s.memory_mib for s in samples]
    return [
        line_chart(
            "cpu", "CPU while awake", cpu, "%",
            f"{len(cpu)} samples: now {cpu[-1]:.1f} % of one CPU, at most {max(cpu):.1f} %.",
            first_label=first, last_label=last,
        ),
        line_chart(
            "memory", "Memory while awake", memory, "MiB",
            f"{len(memory)} samples: now {memory[-1]:.1f} MiB of its "
            f"{samples[-1].memory_limit_mib:.0f} MiB limit, at most {max(memory):.1f} MiB.",
            first_label=first, last_label=last,
        ),
    ]  # fmt: skip
