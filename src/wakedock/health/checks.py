"""Is each component WakeDock relies on working? Cheap, bounded checks, shared by every caller.

Each check runs on a worker thread of its own pool (never on the event loop), answers within
`timeout` seconds or counts as `down`, and is never started twice at once: a check still hung
on a dead dependency is reported `down` instead of queueing more threads behind it. Results are
kept for `cache_seconds`, so a flood of health requests costs one round of checks per interval.
A report names components and states only: no addresses, no error texts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Engine, text

from wakedock.ratelimit.limiter import AttemptLimiter
from wakedock.runtime.base import ContainerRuntime
from wakedock.secrets.base import SecretProvider
from wakedock.siem.exporter import SiemExporter

log = logging.getLogger("wakedock.health")


class Health(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    DOWN = "down"


_RANK = {Health.OK: 0, Health.DEGRADED: 1, Health.DOWN: 2}


def worst(states: list[Health]) -> Health:
    return max(states, key=_RANK.__getitem__, default=Health.OK)


@dataclass(frozen=True)
class Check:
    """A blocking probe of one component: its state, or an exception meaning `down`."""

    name: str
    probe: Callable[[], Health]


class HealthChecks:
    def __init__(
        self, checks: list[Check], *, timeout: float = 2.0, cache_seconds: float = 2.0
    ) -> None:
        self._checks = checks
        self._timeout = timeout
        self._cache_seconds = cache_seconds
        self._pool = ThreadPoolExecutor(max(1, len(checks)), thread_name_prefix="health")
        self._running: dict[str, Future[Health]] = {}
        self._started_at: dict[str, float] = {}
        self._report: dict[str, Health] | None = None
        self._reported_at = 0.0

    async def report(self) -> dict[str, Health]:
        """The state of each component, at most `cache_seconds` old."""
        if self._report is not None and time.monotonic() - self._reported_at < self._cache_seconds:
            return self._report
        futures = {check.name: self._start(check) for check in self._checks}
        states = await asyncio.gather(*(self._outcome(n, f) for n, f in futures.items()))
        self._report = dict(zip(futures, states, strict=True))
        self._reported_at = time.monotonic()
        return self._report

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _start(self, check: Check) -> Future[Health]:
        """The probe of `check` still running or just finished, or a new one."""
        latest = self._running.get(check.name)
        started = self._started_at.get(check.name, 0.0)
        if latest is None or (latest.done() and time.monotonic() - started >= self._cache_seconds):
            latest = self._pool.submit(check.probe)
            self._running[check.name] = latest
            self._started_at[check.name] = time.monotonic()
        return latest

    async def _outcome(self, name: str, future: Future[Health]) -> Health:
        try:
            # Shielded: a caller timing out must not cancel the probe others are awaiting.
            waited = asyncio.shield(asyncio.wrap_future(future))
            return await asyncio.wait_for(waited, self._timeout)
        except TimeoutError:
            return Health.DOWN
        except (Exception, asyncio.CancelledError) as exc:  # noqa: BLE001 - a failed probe is down
            log.debug("health check %s failed: %s", name, type(exc).__name__)
            return Health.DOWN


def database_check(engine: Engine) -> Check:
    def probe() -> Health:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return Health.OK

    return Check("database", probe)


def rate_limit_check(limiter: AttemptLimiter) -> Check:
    # Down means logins are refused (the limiter fails closed).
    return Check("rate_limit_store", lambda: Health.OK if limiter.healthy() else Health.DOWN)


def engine_check(runtime: ContainerRuntime) -> Check:
    def probe() -> Health:
        runtime.ping()
        return Health.OK

    return Check("container_engine", probe)


def secrets_check(provider: SecretProvider | None) -> Check:
    # Degraded: the backend is unreachable and values are served from memory (S9.2).
    def probe() -> Health:
        return Health.DEGRADED if provider is not None and provider.degraded else Health.OK

    return Check("secrets", probe)


def siem_check(exporter: SiemExporter) -> Check:
    # Degraded, not down: undelivered events wait in the audit table (the outbox).
    return Check("siem", lambda: Health.DEGRADED if exporter.failing() else Health.OK)
