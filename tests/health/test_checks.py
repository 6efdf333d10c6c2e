"""The health checks stay cheap under a flood and bounded when a component hangs. Components
really down (Redis, PostgreSQL, the engine) are in tests/integration."""

from __future__ import annotations

import asyncio
import threading

from wakedock.health.checks import Check, Health, HealthChecks, worst


def test_the_worst_state_wins() -> None:
    assert worst([Health.OK, Health.DEGRADED, Health.OK]) is Health.DEGRADED
    assert worst([Health.DEGRADED, Health.DOWN]) is Health.DOWN
    assert worst([]) is Health.OK


def test_a_flood_of_reports_runs_each_check_once() -> None:
    calls = {"database": 0}

    def probe() -> Health:
        calls["database"] += 1
        return Health.OK

    checks = HealthChecks([Check("database", probe)], cache_seconds=60)

    async def flood() -> list[dict[str, Health]]:
        return await asyncio.gather(*(checks.report() for _ in range(200)))

    reports = asyncio.run(flood())
    assert all(r == {"database": Health.OK} for r in reports)
    assert calls["database"] == 1
    checks.close()


def test_a_hung_component_is_down_and_not_probed_again_while_it_hangs() -> None:
    release = threading.Event()
    started = []

    def hangs() -> Health:
        started.append(1)
        release.wait(30)
        return Health.OK

    def fails() -> Health:
        raise ConnectionError("10.0.0.5:6379 refused")

    checks = HealthChecks(
        [Check("engine", hangs), Check("store", fails), Check("secrets", lambda: Health.DEGRADED)],
        timeout=0.2,
        cache_seconds=0,
    )
    try:
        first = asyncio.run(checks.report())
        second = asyncio.run(checks.report())
    finally:
        release.set()
        checks.close()
    expected = {"engine": Health.DOWN, "store": Health.DOWN, "secrets": Health.DEGRADED}
    assert first == second == expected
    assert len(started) == 1  # the second report did not queue another probe behind it
