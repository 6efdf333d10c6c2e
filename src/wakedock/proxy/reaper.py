"""IdleReaper (S7.6): stops (or pauses) an awake service once it has had no request and no open
connection for its idle timeout; optionally not while its CPU is above a threshold.

With several worker processes only the leader reaps, from every worker's traffic (`shared`):
the services any worker served are candidates, and any worker's request or open connection
keeps a service awake.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool

from wakedock.errors import WakeDockError
from wakedock.proxy.activity import ActivityTracker
from wakedock.proxy.shared import SharedTraffic
from wakedock.proxy.wake import WakeCoordinator
from wakedock.runtime.base import State
from wakedock.services.service import ServiceManager

log = logging.getLogger("wakedock.proxy")


class IdleReaper:
    def __init__(
        self,
        coordinator: WakeCoordinator,
        activity: ActivityTracker,
        services: ServiceManager,
        *,
        interval: float,
        busy_cpu_percent: float | None,
    ) -> None:
        self._coordinator = coordinator
        self._activity = activity
        self._services = services
        self._interval = interval
        self._busy = busy_cpu_percent
        self._shared: SharedTraffic | None = None
        self._leading: Callable[[], bool] = lambda: True

    def share(self, shared: SharedTraffic, leading: Callable[[], bool]) -> None:
        """Reap from every worker's traffic, only while `leading` (server.workers > 1)."""
        self._shared = shared
        self._leading = leading

    async def run_once(self) -> list[str]:
        """One pass over the awake services; returns the names stopped."""
        stopped: list[str] = []
        shared = self._shared
        names = self._coordinator.awake_names()
        idle_seconds = self._activity.idle_seconds
        if shared is not None:
            if not self._leading():
                return stopped
            await shared.refresh()
            names = sorted({*names, *shared.candidates()})
            idle_seconds = shared.idle_seconds
        for name in names:
            try:
                view = await run_in_threadpool(self._services.get, name)
                idle = idle_seconds(name)
                if idle is None or idle < view.spec.idle_timeout_s:
                    continue
                if self._busy is not None and view.container_ref is not None:
                    sample = await run_in_threadpool(self._services.stats, name)
                    if sample.cpu_percent > self._busy:
                        continue  # busy without requests (a batch job): not idle
                if shared is None:
                    if await self._coordinator.stop_if_idle(view):
                        stopped.append(name)
                        log.info("stopped %s after %.0f s idle", name, idle)
                    continue
                if await self._coordinator.stop_if_idle(view, idle_seconds):
                    stopped.append(name)
                    log.info("stopped %s after %.0f s idle", name, idle)
                    await shared.forget(name)
                elif view.state != State.RUNNING.value and not self._coordinator.endpoint_now(name):
                    await shared.forget(name)  # asleep already: not a candidate any more
            except WakeDockError as exc:
                log.warning("idle check of %s failed: %s", name, exc.detail)
        return stopped

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.run_once()
            except Exception:
                log.exception("idle reaper pass failed")
