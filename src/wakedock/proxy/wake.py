"""Waking services on demand (S7.2-S7.4, S7.6): single-flight wakes, readiness, idle stops.

One `WakeCoordinator` per process decides every visit (`request`: access, the client's wake
budget, the most services awake at once, the running wake to join) and holds, per service, the
endpoint while it is awake and the one wake task while it is waking: N concurrent requests share
that task, so a service is started once. A per-service lock orders wakes and stops, so a request
arriving during an idle stop waits for the stop to finish, then wakes the service again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import httpx
from starlette.concurrency import run_in_threadpool

from wakedock.audit.events import Event, EventType, Outcome
from wakedock.auth.sessions import Principal
from wakedock.clock import Clock
from wakedock.config import ProxySettings
from wakedock.context import RequestContext
from wakedock.errors import DependencyUnavailable, TooManyAttempts, WakeDockError
from wakedock.proxy.access import Access, ProxyAccess
from wakedock.proxy.activity import ActivityTracker
from wakedock.proxy.decision import (
    Ready,
    Refusal,
    Refused,
    TooManyAwake,
    WakeDecision,
    WakeFailed,
    Waking,
)
from wakedock.proxy.readiness import probe_once, probe_port, upstream_port
from wakedock.proxy.shared import WakeClaims, stopped_since
from wakedock.proxy.trust import ServiceTrust
from wakedock.ratelimit.limiter import AttemptLimiter
from wakedock.runtime.base import (
    ContainerNotFound,
    ContainerStatus,
    Endpoint,
    Health,
    InvalidState,
    State,
)
from wakedock.services.service import ServiceManager
from wakedock.services.snapshots import ServiceView, WakePhase, WakeSnapshot
from wakedock.services.wake_history import WakeHistory

log = logging.getLogger("wakedock.proxy")
SYSTEM = RequestContext(actor="system:proxy")
# While probing, how often to ask the engine whether the container exited.
_ENGINE_CHECK_SECONDS = 0.5
# The rate-limit budget of wakes a client IP may trigger (proxy.wake_per_ip).
WAKE_BY_IP = "wake:ip"


def wake_budgets(proxy: ProxySettings) -> dict[str, str]:
    """The wake budget per client address, for the limiter."""
    return {WAKE_BY_IP: proxy.wake_per_ip}


@dataclass
class _WakeState:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    endpoint: Endpoint | None = None
    task: asyncio.Task[Endpoint] | None = None
    phase: WakePhase = WakePhase.ASLEEP
    waking_since: float | None = None
    last_error: str | None = None
    time_to_ready: float | None = None
    ready_at: datetime | None = None
    # This process started the container of the current wake (not only probed one already
    # running): only such a wake is recorded in the wake history.
    started_here: bool = False


class WakeCoordinator:
    def __init__(
        self,
        services: ServiceManager,
        activity: ActivityTracker,
        access: ProxyAccess,
        limiter: AttemptLimiter,
        clock: Clock,
        settings: ProxySettings,
        *,
        history: WakeHistory | None = None,
        trust: ServiceTrust | None = None,
    ) -> None:
        """`history`: where each wake this process started is recorded (the service page's
        time-to-ready chart); `trust`: the zero-trust decision on visits (none: not weighed)."""
        self._services = services
        self._trust = trust
        self._history = history
        self._activity = activity
        self._access = access
        self._limiter = limiter
        self._clock = clock
        self._settings = settings
        self._states: dict[str, _WakeState] = {}
        self._http = httpx.AsyncClient(trust_env=False)
        # Several workers: wakes and idle stops hold the service's claim in the database, and
        # the services running (woken by any worker) count against max_awake.
        self._claims: WakeClaims | None = None
        self._running: Callable[[], Iterable[str]] = tuple

    def share(self, claims: WakeClaims, running: Callable[[], Iterable[str]]) -> None:
        """Order wakes and stops with the other worker processes (server.workers > 1);
        `running`: the services the database says run (the host map's view)."""
        self._claims = claims
        self._running = running

    def drop_stopped(self, named: Callable[[str], ServiceView | None]) -> None:
        """Forget the endpoints of services another worker stopped since this one saw them
        ready (`named`: the host map's current view of a service)."""
        for name, state in self._states.items():
            ready_at = state.ready_at
            if state.endpoint is None or ready_at is None or state.lock.locked():
                continue
            if stopped_since(named(name), ready_at):
                self.forget(name)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(
        self,
        view: ServiceView,
        principal: Principal | None,
        context: RequestContext,
        headers: Callable[[], Mapping[str, str]] = dict,
    ) -> WakeDecision:
        """The decision on one visit of `view`: Ready (awake), Waking (a wake to wait for,
        started now or joined), or Refused (access, the zero-trust decision, the wake budget
        of the address, capacity). `headers`: the client's, as the zero-trust engine reads
        them (asked for only when the visit must be weighed).

        Answers without suspending when the service is awake and the visit's zero-trust
        decision is kept (the hot path of every request).
        """
        access = self._access.decide(view, principal)
        if access is Access.LOGIN:
            return Refused(Refusal.SIGN_IN)
        if access is Access.FORBIDDEN:
            return Refused(Refusal.FORBIDDEN)
        state = self._state(view.name)
        if self._trust is not None:
            waking = state.endpoint is None
            refused = await self._trust.judge(view, principal, context, headers, waking=waking)
            if refused is not None:
                return refused
        if state.endpoint is not None:
            return Ready(state.endpoint)
        task = state.task
        if task is None or task.done():
            ip = context.ip or "?"
            try:
                await run_in_threadpool(self._limiter.check, WAKE_BY_IP, ip)
                # Another request may have started the wake meanwhile: join it, at no cost.
                task = state.task
                if task is None or task.done():
                    task = self._begin(view, context)
                    # Only a request that starts a wake spends the client's wake budget.
                    await run_in_threadpool(self._limiter.record_failure, WAKE_BY_IP, ip)
            except TooManyAttempts as exc:
                return Refused(Refusal.TOO_MANY_WAKES, retry_after=exc.retry_after)
            except DependencyUnavailable as exc:  # too many awake, or no rate-limit storage
                return Refused(Refusal.BUSY, exc.detail)
        return Waking(task, patience_s=view.spec.wake_timeout_s + 1)

    async def trusted(
        self,
        view: ServiceView,
        principal: Principal | None,
        context: RequestContext,
        headers: Callable[[], Mapping[str, str]] = dict,
    ) -> Refused | None:
        """The zero-trust decision alone on a visit of an awake service (the edge's access
        check): None when it may go on."""
        if self._trust is None:
            return None
        return await self._trust.judge(view, principal, context, headers, waking=False)

    def snapshot(self, name: str) -> WakeSnapshot:
        """What this process sees of the service's wakes and traffic now."""
        state = self._state(name)
        activity = self._activity.of(name)
        since = state.waking_since
        return WakeSnapshot(
            phase=state.phase,
            waking_for=self._clock.monotonic() - since if since is not None else None,
            time_to_ready=state.time_to_ready,
            last_activity=activity.last_seen,
            open_connections=activity.open_connections,
        )

    def awake_names(self) -> list[str]:
        return [n for n, s in self._states.items() if s.endpoint is not None]

    def endpoint_now(self, name: str) -> Endpoint | None:
        """The endpoint of an awake service, without waiting."""
        return self._state(name).endpoint

    def adopt(self, view: ServiceView) -> None:
        """Traffic reached a running service around this process (the edge's direct routes):
        if this process does not count it as awake, find its endpoint (the container is running:
        only its readiness is probed) so that the idle reaper watches it too. A service the
        database does not say is running (stopping, stopped) is left alone: a late log line must
        not wake what was just put to sleep."""
        state = self._state(view.name)
        if view.state != State.RUNNING.value or state.endpoint is not None:
            return
        if state.task is not None and not state.task.done():
            return
        try:
            self._begin(view, SYSTEM)
        except WakeDockError as exc:
            log.info("not adopting %s reached through the edge: %s", view.name, exc.detail)

    def forget(self, name: str) -> None:
        """The upstream refused a connection: it was stopped behind our back; wake it next time."""
        state = self._state(name)
        state.endpoint = None
        state.phase = WakePhase.ASLEEP

    async def ensure_awake(self, view: ServiceView, context: RequestContext) -> Endpoint:
        """The endpoint, waking the service first if needed (no access or budget check: for a
        visitor already admitted, and for the services a woken one depends on)."""
        endpoint = self.endpoint_now(view.name)
        if endpoint is not None:
            return endpoint
        return await asyncio.shield(self._begin(view, context))

    def _state(self, name: str) -> _WakeState:
        return self._states.setdefault(name, _WakeState())

    def _begin(self, view: ServiceView, context: RequestContext) -> asyncio.Task[Endpoint]:
        """The wake task of `view`: the running one, or a new one (single flight)."""
        state = self._state(view.name)
        if state.task is None or state.task.done():
            if state.endpoint is None:
                waking = {
                    n for n, s in self._states.items() if s.endpoint or s.phase is WakePhase.WAKING
                }
                waking.update(self._running())
                if len(waking) >= self._settings.max_awake:
                    raise TooManyAwake(
                        f"{len(waking)} services are awake, the most this server allows; "
                        "try again when one has gone back to sleep"
                    )
            state.task = asyncio.create_task(self._wake(view, context))
            # A failure is reported to the requests awaiting the task, never as "never retrieved".
            state.task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return state.task

    async def _wake(self, view: ServiceView, context: RequestContext) -> Endpoint:
        state = self._state(view.name)
        async with state.lock:  # waits for a stop in progress
            if state.endpoint is not None:
                return state.endpoint
            started = self._clock.monotonic()
            state.phase, state.waking_since, state.last_error = WakePhase.WAKING, started, None
            state.started_here = False
            try:
                for dependency in view.spec.depends_on:
                    await self.ensure_awake(
                        await run_in_threadpool(self._services.get, dependency), context
                    )
                endpoint = await asyncio.wait_for(
                    self._claimed_start(view, context), timeout=view.spec.wake_timeout_s
                )
            except Exception as exc:
                state.phase = WakePhase.FAILED
                state.last_error = _describe(exc)
                # Once per failed wake: the visitor's page only says where to look.
                log.warning(
                    "could not wake %s: %s",
                    view.name,
                    state.last_error,
                    # An unexpected error (not an engine answer, not the timeout) needs its trace.
                    exc_info=not isinstance(exc, WakeDockError | TimeoutError),
                )
                await self._audit_failure(view, context, state.last_error)
                await run_in_threadpool(self._services.mark_error, view.name)
                raise WakeFailed(
                    f"{view.name} could not be started: {state.last_error}",
                    timed_out=isinstance(exc, TimeoutError),
                ) from exc
            state.endpoint, state.phase = endpoint, WakePhase.READY
            state.time_to_ready = round(self._clock.monotonic() - started, 3)
            state.ready_at = self._clock.now()
            self._activity.touch(view.name)
            log.info("woke %s in %.3f s", view.name, state.time_to_ready)
            if state.started_here:
                await self._remember(view, state.time_to_ready, state.ready_at)
            return endpoint

    async def _remember(self, view: ServiceView, seconds: float, at: datetime) -> None:
        """Add the wake to the history; a failed write costs the chart one bar, not the wake."""
        if self._history is None:
            return
        try:
            await run_in_threadpool(self._history.record, view.id, seconds, at)
        except Exception:
            log.exception("could not record the wake of %s", view.name)

    async def _claimed_start(self, view: ServiceView, context: RequestContext) -> Endpoint:
        if self._claims is None:
            return await self._start_and_probe(view, context)
        # The worker holding the claim starts the service; the others wait for it, then find
        # it running and only probe it. The caller's wake timeout bounds the wait.
        async with self._claims.held(view.name, view.spec.wake_timeout_s + 5):
            return await self._start_and_probe(view, context)

    async def _start_and_probe(self, view: ServiceView, context: RequestContext) -> Endpoint:
        services = self._services
        live = await run_in_threadpool(services.status, view.name)
        if live[1] is None or live[1].state is not State.RUNNING:
            view = await run_in_threadpool(services.wake, view.name, context)
            self._state(view.name).started_here = True
        port = upstream_port(view.spec)
        if port is None:
            raise WakeFailed("the service publishes no TCP port to proxy to")
        probed = probe_port(view.spec)
        # The published port is fixed once the container runs: look it up once it is published,
        # then probe it tightly; ask the engine only now and then whether the container died.
        target: tuple[str, int] | None = None
        interval = self._settings.probe_interval_seconds
        next_check = 0.0
        while True:
            now = self._clock.monotonic()
            if target is None or now >= next_check:
                status = await run_in_threadpool(services.engine_status, view)
                if status.state in (State.STOPPED, State.MISSING):
                    raise WakeFailed(_exited(status))
                if target is None and probed:
                    target = await self._published(view, probed)
                if target is None and status.health == Health.HEALTHY:
                    break
                next_check = now + _ENGINE_CHECK_SECONDS
            if target is not None and await probe_once(self._http, view.spec, *target):
                break
            # A Docker healthcheck runs every few seconds: no point asking the engine faster.
            await asyncio.sleep(interval if target is not None else max(interval, 0.25))
        return await run_in_threadpool(services.endpoint, view, port)

    async def _published(self, view: ServiceView, port: int) -> Endpoint | None:
        """Where `port` is published; None while it is not (a crashed container restarting)."""
        try:
            return await run_in_threadpool(self._services.endpoint, view, port)
        except InvalidState:
            return None

    async def stop_if_idle(
        self,
        view: ServiceView,
        idle_seconds: Callable[[str], float | None] | None = None,
    ) -> bool:
        """Stop `view` when it is still idle once the lock is held; True when it was stopped.

        `idle_seconds` (several workers) reads every worker's traffic, and the service may
        have been woken by another worker: it is stopped when the engine runs it.
        """
        state = self._state(view.name)
        async with state.lock:
            if self._claims is None or idle_seconds is None:
                return await self._stop_locked(view, state, self._activity.idle_seconds)
            timeout = view.spec.wake_timeout_s
            try:
                async with self._claims.held(view.name, timeout + 5, wait_seconds=timeout):
                    return await self._stop_locked(view, state, idle_seconds)
            except TimeoutError:
                return False  # a wake held the claim all this time: not idle anyway

    async def _stop_locked(
        self,
        view: ServiceView,
        state: _WakeState,
        idle_seconds: Callable[[str], float | None],
    ) -> bool:
        idle = idle_seconds(view.name)
        if idle is None or idle < view.spec.idle_timeout_s:
            return False
        if state.endpoint is None:
            if self._claims is None:
                return False
            live = await run_in_threadpool(self._services.status, view.name)
            if live[1] is None or live[1].state is not State.RUNNING:
                return False  # woken by another worker and already stopped
        state.endpoint, state.phase = None, WakePhase.STOPPING
        try:
            await run_in_threadpool(self._services.stop_idle, view.name, SYSTEM)
        except ContainerNotFound:
            pass
        except WakeDockError as exc:
            log.warning("idle stop of %s failed: %s", view.name, exc.detail)
        finally:
            state.phase = WakePhase.ASLEEP
        return True

    async def _audit_failure(self, view: ServiceView, context: RequestContext, why: str) -> None:
        event = Event(
            EventType.SERVICE_START,
            Outcome.FAILURE,
            target=view.name,
            details={"trigger": "wake", "error": why},
        )
        try:
            await run_in_threadpool(self._services.audit, event, context)
        except Exception:
            log.exception("could not audit the failed wake of %s", view.name)


def _exited(status: ContainerStatus) -> str:
    """The engine's reason a container stopped while it was being woken."""
    why = "the container exited while starting"
    if status.exit_code is not None:
        why += f" with code {status.exit_code}"
    if status.error:
        why += f": {status.error}"
    return why + " (see its logs)"


def _describe(exc: Exception) -> str:
    if isinstance(exc, TimeoutError):
        return "not ready within its wake timeout"
    if isinstance(exc, WakeDockError):
        return exc.detail
    return type(exc).__name__
