"""The CIS Docker Benchmark results of every managed container, for the posture page.

The same reading as a service's page (`dashboard/applied.py` over `docker inspect`), for all of
them at once. It must not hammer the engine: one round at a time (concurrent page loads share
it), one `inspect` after another on a single worker thread, at most `MAX_CONTAINERS` of them,
and the result kept for `CACHE_SECONDS`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

from wakedock.clock import Clock
from wakedock.dashboard.applied import applied
from wakedock.errors import WakeDockError
from wakedock.services.service import ServiceManager

MAX_CONTAINERS = 100
CACHE_SECONDS = 30.0


@dataclass(frozen=True)
class ContainerResult:
    """One service's container: the CIS items it fails, or why it could not be read."""

    service: str
    checked: int
    failed: tuple[str, ...]
    # Set when there was nothing to check ("no container yet") or the engine could not tell.
    note: str = ""


@dataclass(frozen=True)
class FleetChecks:
    """Every managed container's results, and when they were read."""

    results: tuple[ContainerResult, ...]
    read_at: datetime
    # More services than MAX_CONTAINERS: the rest were not read.
    truncated: bool

    @property
    def failing(self) -> int:
        """Containers failing at least one CIS item."""
        return sum(1 for r in self.results if r.failed)

    @property
    def passing(self) -> int:
        """Containers read that fail no CIS item."""
        return sum(1 for r in self.results if r.checked and not r.failed)


class ContainerChecks:
    """The fleet's CIS results, read at most once per `cache_seconds`."""

    def __init__(
        self, services: ServiceManager, clock: Clock, cache_seconds: float = CACHE_SECONDS
    ) -> None:
        self._services = services
        self._clock = clock
        self._ttl = timedelta(seconds=cache_seconds)
        self._lock = asyncio.Lock()
        self._last: FleetChecks | None = None

    async def current(self) -> FleetChecks:
        """The results, at most `cache_seconds` old (a page load waits for a round in flight
        rather than starting its own)."""
        async with self._lock:
            last = self._last
            if last is None or self._clock.now() - last.read_at >= self._ttl:
                last = await asyncio.to_thread(self._read)
                self._last = last
            return last

    def _read(self) -> FleetChecks:
        views = self._services.list()
        results = []
        for view in views[:MAX_CONTAINERS]:
            if view.container_ref is None:
                results.append(ContainerResult(view.name, 0, (), "no container yet"))
                continue
            try:
                attrs = self._services.inspect(view)
            except WakeDockError as exc:
                results.append(ContainerResult(view.name, 0, (), f"not readable: {exc.detail}"))
                continue
            if not attrs:
                results.append(ContainerResult(view.name, 0, (), "no container in the engine"))
                continue
            checks = applied(attrs[0]).checks
            failed = tuple(f"{c.id} {c.title}" for c in checks if not c.passed and not c.advisory)
            results.append(ContainerResult(view.name, len(checks), failed))
        return FleetChecks(tuple(results), self._clock.now(), len(views) > MAX_CONTAINERS)
