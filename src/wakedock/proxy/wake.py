"""Waking services on demand (S7.2-S7.4, S7.6): single-flight wakes, readiness, idle stops.

One `WakeCoordinator` per process holds, per service, the endpoint while it is awake and the one
wake task while it is waking: N concurrent requests share that task, so a service is started once.
A per-service lock orders wakes and stops, so a request arriving during an idle stop waits for the
stop to finish, then wakes the service again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import httpx
from starlette.concurrency import run_in_threadpool

from wakedock.audit.events import Event, EventType, Outcome
from wakedock.clock import Clock
from wakedock.config import ProxySettings
from wakedock.context import RequestContext
from wakedock.errors import DependencyUnavailable, WakeDockError
from wakedock.proxy.activity import ActivityTracker
from wakedock.proxy.readiness import probe_once, probe_port, upstream_port
from wakedock.rbac.permissions import Role
from wakedock.runtime.base import ContainerNotFound, ContainerStatus, InvalidState, State
from wakedock.services.service import ServiceManager
from wakedock.services.views import Actor, ServiceView

log = logging.getLogger("wakedock.proxy")
SYSTEM = RequestContext(actor="system:proxy")
# While probing, how often to ask the engine whether the container exited.
_ENGINE_CHECK_SECONDS = 0.5
# The rate-limit budget of wakes a client IP may trigger (proxy.wake_per_ip).
WAKE_BY_IP = "wake:ip"


class WakeFailed(WakeDockError):
    """The service could not be started or never became ready; the next request may retry."""

    status_code = 502
    code = "wake_failed"

    def __init__(self, detail: str, *, timed_out: bool = False) -> None:
        super().__init__(detail)
        self.timed_out = timed_out


class TooManyAwake(DependencyUnavailable):
    code = "too_many_awake"


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int


@dataclass
class WakeState:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    endpoint: Endpoint | None = None
    task: asyncio.Task[Endpoint] | None = None
    phase: str = "asleep"
    waking_since: float | None = None
    last_error: str | None = None
    # Seconds from the wake request to the passed readiness probe, for the last wake.
    time_to_ready: float | None = None


class WakeCoordinator:
    def __init__(
        self,
        services: ServiceManager,
        activity: ActivityTracker,
        clock: Clock,
        settings: ProxySettings,
    ) -> None:
        self._services = services
        self._activity = activity
        self._clock = clock
        self._settings = settings
        self._states: dict[str, WakeState] = {}
        self._http = httpx.AsyncClient(trust_env=False)

    async def aclose(self) -> None:
        await self._http.aclose()

    def state(self, name: str) -> WakeState:
        return self._states.setdefault(name, WakeState())

    def awake_names(self) -> list[str]:
        return [n for n, s in self._states.items() if s.endpoint is not None]

    def endpoint_now(self, name: str) -> Endpoint | None:
        """The endpoint of an awake service, without waiting (the hot path of every request)."""
        return self.state(name).endpoint

    def forget(self, name: str) -> None:
        """The upstream refused a connection: it was stopped behind our back; wake it next time."""
        state = self.state(name)
        state.endpoint = None
        state.phase = "asleep"

    def begin(self, view: ServiceView, context: RequestContext) -> asyncio.Task[Endpoint]:
        """The wake task of `view`: the running one, or a new one (single flight)."""
        state = self.state(view.name)
        if state.task is None or state.task.done():
            if state.endpoint is None:
                waking = [s for s in self._states.values() if s.endpoint or s.phase == "waking"]
                if len(waking) >= self._settings.max_awake:
                    raise TooManyAwake(
                        f"{len(waking)} services are awake, the most this server allows; "
                        "try again when one has gone back to sleep"
                    )
            state.task = asyncio.create_task(self._wake(view, context))
            # A failure is reported to the requests awaiting the task, never as "never retrieved".
            state.task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return state.task

    async def ensure_awake(self, view: ServiceView, context: RequestContext) -> Endpoint:
        endpoint = self.endpoint_now(view.name)
        if endpoint is not None:
            return endpoint
        return await asyncio.shield(self.begin(view, context))

    async def _wake(self, view: ServiceView, context: RequestContext) -> Endpoint:
        state = self.state(view.name)
        async with state.lock:  # waits for a stop in progress
            if state.endpoint is not None:
                return state.endpoint
            started = time.monotonic()
            state.phase, state.waking_since, state.last_error = "waking", started, None
            try:
                for dependency in view.spec.depends_on:
                    await self.ensure_awake(
                        await run_in_threadpool(self._services.get, dependency), context
                    )
                endpoint = await asyncio.wait_for(
                    self._start_and_probe(view, context), timeout=view.spec.wake_timeout_s
                )
            except Exception as exc:
                state.phase = "failed"
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
            state.endpoint, state.phase = endpoint, "ready"
            state.time_to_ready = round(time.monotonic() - started, 3)
            self._activity.touch(view.name)
            log.info("woke %s in %.3f s", view.name, state.time_to_ready)
            return endpoint

    async def _start_and_probe(self, view: ServiceView, context: RequestContext) -> Endpoint:
        runtime = self._services.runtime
        live = await run_in_threadpool(self._services.status, view.name)
        if live[1] is None or live[1].state is not State.RUNNING:
            view = await run_in_threadpool(self._services.wake, view.name, context)
        ref = view.container_ref or ""
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
            now = time.monotonic()
            if target is None or now >= next_check:
                status = await run_in_threadpool(runtime.status, ref)
                if status.state in (State.STOPPED, State.MISSING):
                    raise WakeFailed(_exited(status))
                if target is None and probed:
                    target = await self._published(ref, probed)
                if target is None and status.health == "healthy":
                    break
                next_check = now + _ENGINE_CHECK_SECONDS
            if target is not None and await probe_once(self._http, view.spec, *target):
                break
            # A Docker healthcheck runs every few seconds: no point asking the engine faster.
            await asyncio.sleep(interval if target is not None else max(interval, 0.25))
        host, published = await run_in_threadpool(runtime.endpoint, ref, port)
        return Endpoint(host, published)

    async def _published(self, ref: str, port: int) -> tuple[str, int] | None:
        """Where `port` is published; None while it is not (a crashed container restarting)."""
        try:
            return await run_in_threadpool(self._services.runtime.endpoint, ref, port)
        except InvalidState:
            return None

    async def stop_if_idle(self, view: ServiceView) -> bool:
        """Stop `view` when it is still idle once the lock is held; True when it was stopped."""
        state = self.state(view.name)
        async with state.lock:
            idle = self._activity.idle_seconds(view.name)
            if state.endpoint is None or idle is None or idle < view.spec.idle_timeout_s:
                return False
            state.endpoint, state.phase = None, "stopping"
            try:
                actor = Actor(name="system:idle", role=Role.ADMIN)
                await run_in_threadpool(
                    self._services.stop, actor, view.name, SYSTEM, reason="idle"
                )
            except ContainerNotFound:
                pass
            except WakeDockError as exc:
                log.warning("idle stop of %s failed: %s", view.name, exc.detail)
            finally:
                state.phase = "asleep"
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
