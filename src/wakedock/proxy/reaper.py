"""IdleReaper (S7.6): stops (or pauses) an awake service once it has had no request and no open
connection for its idle timeout; optionally not while its CPU is above a threshold."""

from __future__ import annotations

import asyncio
import logging

from starlette.concurrency import run_in_threadpool

from wakedock.errors import WakeDockError
from wakedock.proxy.activity import ActivityTracker
from wakedock.proxy.wake import WakeCoordinator
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

    async def run_once(self) -> list[str]:
        """One pass over the awake services; returns the names stopped."""
        stopped: list[str] = []
        for name in self._coordinator.awake_names():
            try:
                view = await run_in_threadpool(self._services.get, name)
                idle = self._activity.idle_seconds(name)
                if idle is None or idle < view.spec.idle_timeout_s:
                    continue
                if self._busy is not None and view.container_ref is not None:
                    sample = await run_in_threadpool(self._services.stats, name)
                    if sample.cpu_percent > self._busy:
                        continue  # busy without requests (a batch job): not idle
                if await self._coordinator.stop_if_idle(view):
                    stopped.append(name)
                    log.info("stopped %s after %.0f s idle", name, idle)
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
