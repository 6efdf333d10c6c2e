"""Time, injected: tests move a FakeClock instead of sleeping."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (durations, cache ages), as time.monotonic."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock whose wall time only moves when told to.

    Its monotonic time is the real one plus every `advance`: the waits it measures (a wake's
    probes, a cache's age) are real asyncio sleeps and timeouts, so it must keep moving with
    them, and a test can still jump it forward.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC)
        self._skipped = 0.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return time.monotonic() + self._skipped

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._skipped += seconds
