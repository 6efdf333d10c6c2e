"""CPU and memory of awake services, sampled while someone watches their page.

There is no background sampler: a sample is taken when a service's page asks for its live part
(every few seconds while the page is open), at most one per `EVERY_SECONDS` per service however
many pages watch it, and only while the service runs. The last `KEEP` samples per service stay in
this process's memory, which bounds it; they are a picture of the last minutes, not a history.
A sample is the engine's (`ServiceManager.stats`, what `GET /api/v1/services/{id}/stats` reads).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime

from wakedock.clock import Clock
from wakedock.errors import WakeDockError
from wakedock.runtime.base import State
from wakedock.services.service import ServiceManager
from wakedock.services.snapshots import ServiceView

log = logging.getLogger("wakedock.dashboard")
KEEP = 120
EVERY_SECONDS = 5.0


@dataclass(frozen=True)
class Sample:
    at: datetime
    cpu_percent: float
    memory_mib: float
    memory_limit_mib: float


class UsageSamples:
    """The recent samples of each service (blocking `sample`: call it from a worker thread)."""

    def __init__(self, services: ServiceManager, clock: Clock) -> None:
        self._services = services
        self._clock = clock
        self._samples: dict[str, deque[Sample]] = {}
        self._taken_at: dict[str, float] = {}
        self._lock = threading.Lock()

    def sample(self, view: ServiceView) -> None:
        """Take a sample of `view` if it runs and its last one is old enough."""
        if view.state != State.RUNNING.value:
            return
        now = self._clock.monotonic()
        with self._lock:
            if now - self._taken_at.get(view.name, -EVERY_SECONDS) < EVERY_SECONDS:
                return
            # Marked before the engine answers (a stats call takes a second or two): a second
            # page asking meanwhile does not start another.
            self._taken_at[view.name] = now
        try:
            stats = self._services.stats(view.id)
        except WakeDockError as exc:  # stopped meanwhile, engine unreachable: no sample
            log.debug("no usage sample of %s: %s", view.name, exc.detail)
            return
        mib = 1024 * 1024
        found = Sample(
            self._clock.now(),
            stats.cpu_percent,
            stats.memory_bytes / mib,
            stats.memory_limit_bytes / mib,
        )
        with self._lock:
            self._samples.setdefault(view.name, deque(maxlen=KEEP)).append(found)

    def of(self, name: str) -> list[Sample]:
        """The samples of `name` kept in this process, oldest first."""
        with self._lock:
            return list(self._samples.get(name, ()))
