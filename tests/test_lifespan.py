"""The application lifespan (app.py): what starts with the server, in which order it stops,
and that a failure on either side still stops everything that was started."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from conftest import Harness
from wakedock.app import create_asgi
from wakedock.proxy.handler import ProxyApp
from wakedock.proxy.reaper import IdleReaper
from wakedock.proxy.wake import WakeCoordinator


class Part:
    """Stands in for a started/stopped part (SIEM delivery, the secret watcher, ...)."""

    def __init__(self, log: list[str], name: str, failing: str = "") -> None:
        self._log, self._name, self._failing = log, name, failing

    def _do(self, what: str) -> None:
        self._log.append(f"{what} {self._name}")
        if what == self._failing:
            raise RuntimeError(f"{self._name} cannot {what}")

    def start(self) -> None:
        self._do("start")

    def stop(self) -> None:
        self._do("stop")

    def close(self) -> None:
        self._do("close")


@pytest.fixture
def log() -> list[str]:
    return []


@pytest.fixture
def h(
    make_harness: Callable[..., Harness], log: list[str], monkeypatch: pytest.MonkeyPatch
) -> Harness:
    h = make_harness(proxy={"admin_hosts": ["localhost"]})
    c = h.components
    c.siem = Part(log, "siem")  # type: ignore[assignment]
    c.secret_watcher = Part(log, "watcher")  # type: ignore[assignment]
    c.discovery = Part(log, "discovery")  # type: ignore[assignment]
    c.health = Part(log, "health")  # type: ignore[assignment]
    c.secret_provider = Part(log, "vault")  # type: ignore[assignment]

    async def proxy_closed(self: ProxyApp) -> None:
        log.append("close proxy")

    async def wakes_closed(self: WakeCoordinator) -> None:
        log.append("close wakes")

    async def reaping(self: IdleReaper) -> None:
        log.append("start reaper")
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            log.append("stop reaper")
            raise

    monkeypatch.setattr(ProxyApp, "aclose", proxy_closed)
    monkeypatch.setattr(WakeCoordinator, "aclose", wakes_closed)
    monkeypatch.setattr(IdleReaper, "run", reaping)
    return h


CLOSED_LAST = ["close proxy", "close wakes", "close health", "close vault"]


def test_parts_start_in_order_and_stop_in_reverse(h: Harness, log: list[str]) -> None:
    with TestClient(create_asgi(h.components), base_url="https://localhost") as client:
        assert client.get("/api/v1/health/live").status_code == 200
        assert log == ["start siem", "start watcher", "start discovery", "start reaper"]
    assert log[4:] == [
        "stop reaper",
        "stop discovery",
        "stop watcher",
        "stop siem",
        *CLOSED_LAST,
    ]


def test_a_failing_start_stops_what_had_started_and_fails_the_startup(
    h: Harness, log: list[str]
) -> None:
    h.components.secret_watcher = Part(log, "watcher", failing="start")  # type: ignore[assignment]
    app = create_asgi(h.components)
    with (
        pytest.raises(RuntimeError, match="watcher cannot start"),
        TestClient(app, base_url="https://localhost"),
    ):
        pass  # pragma: no cover - never reached
    assert log == ["start siem", "start watcher", "stop siem", *CLOSED_LAST]


def test_a_failing_stop_does_not_skip_the_others(h: Harness, log: list[str]) -> None:
    h.components.siem = Part(log, "siem", failing="stop")  # type: ignore[assignment]
    app = create_asgi(h.components)
    with (
        pytest.raises(RuntimeError, match="siem cannot stop"),
        TestClient(app, base_url="https://localhost"),
    ):
        pass
    assert log == [
        "start siem",
        "start watcher",
        "start discovery",
        "start reaper",
        "stop reaper",
        "stop discovery",
        "stop watcher",
        "stop siem",
        *CLOSED_LAST,
    ]
