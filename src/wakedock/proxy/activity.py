"""What the idle reaper needs to know: when each service was last used, and what is still open."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from wakedock.clock import Clock

# Minutes of request counts kept per service (the service page's requests-per-minute chart).
MINUTES_KEPT = 60


@dataclass
class Activity:
    last_seen: datetime | None = None
    open_connections: int = 0


class ActivityTracker:
    """Last request time and open connections (requests, streams, WebSockets) per service.

    Single event loop: no lock needed, and nothing awaits between reading and changing a count.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._services: dict[str, Activity] = {}
        # Touched since the last `drain` (several workers: what to write to the database).
        self._touched: set[str] = set()
        # Per service, [minute since the epoch, requests] for the last MINUTES_KEPT minutes
        # that saw any: bounded, whatever the traffic.
        self._minutes: dict[str, deque[list[int]]] = {}

    def of(self, name: str) -> Activity:
        return self._services.setdefault(name, Activity())

    def touch(self, name: str, requests: int = 0) -> None:
        """`name` was used now; `requests`: how many requests it served that no `connection`
        block counted (the edge's direct ones, proxy/edge_activity.py)."""
        self.of(name).last_seen = now = self._clock.now()
        self._touched.add(name)
        if requests > 0:
            self._count(name, int(now.timestamp()) // 60, requests)

    @contextmanager
    def connection(self, name: str) -> Iterator[None]:
        """Count one open connection for the duration of the block (and touch at both ends)."""
        activity = self.of(name)
        activity.open_connections += 1
        activity.last_seen = now = self._clock.now()
        self._touched.add(name)
        self._count(name, int(now.timestamp()) // 60)
        try:
            yield
        finally:
            activity.open_connections -= 1
            activity.last_seen = self._clock.now()
            self._touched.add(name)

    def _count(self, name: str, minute: int, requests: int = 1) -> None:
        minutes = self._minutes.get(name)
        if minutes is None:
            minutes = self._minutes[name] = deque(maxlen=MINUTES_KEPT)
        if minutes and minutes[-1][0] == minute:
            minutes[-1][1] += requests
        else:
            minutes.append([minute, requests])

    def requests_per_minute(self, name: str, minutes: int = MINUTES_KEPT) -> list[int]:
        """Requests this process proxied (or heard the edge serve directly) to `name` in each
        of the last `minutes` minutes (oldest first, the current minute last; 0 for a minute
        without any)."""
        now = int(self._clock.now().timestamp()) // 60
        counted = {entry[0]: entry[1] for entry in self._minutes.get(name, ())}
        return [counted.get(minute, 0) for minute in range(now - minutes + 1, now + 1)]

    def drain(self) -> dict[str, Activity]:
        """The services touched since the last drain or holding connections, with a copy of
        their activity now (for the workers' shared view, proxy/shared.py)."""
        names = self._touched | {n for n, a in self._services.items() if a.open_connections}
        self._touched = set()
        return {
            n: Activity(self._services[n].last_seen, self._services[n].open_connections)
            for n in names
        }

    def idle_seconds(self, name: str) -> float | None:
        """Seconds since the last activity; None when never seen, or while a connection is open."""
        activity = self.of(name)
        if activity.open_connections > 0 or activity.last_seen is None:
            return None
        return (self._clock.now() - activity.last_seen).total_seconds()
