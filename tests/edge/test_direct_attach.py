"""`wakedock serve` waits the stop grace only while an edge with direct routes is attached
(`edge.direct_routes: auto`, the default): a real `wakedock serve`, a real `wakedock edge run`
(nginx + ModSecurity + CRS) started after it and stopped before it, services in the real Docker
engine. The grace is 60 s (the most the settings take): a stop that waited it would not end
within the waits below."""

from __future__ import annotations

import functools
import sqlite3
from pathlib import Path

import httpx
import pytest
from docker import DockerClient

from edge.test_direct_engine import (
    DIRECT,
    THROUGH_WAKEDOCK,
    Container,
    _client,
    _direct_soon,
    _hop,
    _routed,
    _stops,
)
from edge.test_edge_waf import TRUSTED, edge_in_front
from support.engine import (
    AddApp,
    add_app,
    container_of,
    engine,
    installation,
    network,
    python_image,
    wait_for,
)
from support.server import run_cli, wakedock_server

pytestmark = pytest.mark.integration
__all__ = ["add_app", "engine", "installation", "network", "python_image"]


@pytest.fixture
def container(engine: DockerClient, installation: str) -> Container:
    return functools.partial(container_of, engine, installation)


def _state(data: Path, name: str) -> str:
    with sqlite3.connect(data / "wakedock.db") as db:
        [(state,)] = db.execute("SELECT state FROM services WHERE name = ?", (name,)).fetchall()
        return str(state)


def _status(data: Path, env: dict[str, str]) -> str:
    done = run_cli(data, "edge", "status", env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_stop_grace_is_waited_only_while_an_edge_is_attached(
    tmp_path: Path, nginx: Path, installation: str, add_app: AddApp, container: Container
) -> None:
    env = {
        **TRUSTED,
        "WAKEDOCK_DOCKER__INSTALLATION": installation,
        "WAKEDOCK_PROXY__REAPER_INTERVAL_SECONDS": "0.5",
        "WAKEDOCK_EDGE__STOP_GRACE_SECONDS": "60",
    }
    data = tmp_path / "data"
    add_app(data, env, "app", idle_timeout_s=3)
    with (
        wakedock_server(data, https=False, env=env) as server,
        httpx.Client(base_url=server.base_url, timeout=60) as wakedock,
    ):
        # No edge: WakeDock wakes the service and proxies it; once idle, the reaper stops it
        # without the 60 s grace.
        assert "edge attached: none" in _status(data, env)
        woken = wakedock.get("/headers", headers={"Host": "app.localhost"})
        assert woken.status_code == 200, woken.text
        assert container("app").status == "running"
        wait_for(lambda: container("app").status == "exited", "the stop, with no grace", 30)
        wait_for(lambda: bool(_stops(data, "app")), "the audited stop", 10)
        assert _state(data, "app") == "stopped"

        # An edge starts after the server: it registers, and the server waits the grace.
        with edge_in_front(data, server, env, poll_seconds=0.3) as edge, _client(edge) as http:
            status = _status(data, env)
            assert "edge attached: none" not in status and "stop grace: 60 s" in status
            assert _hop(http, "app.localhost") == THROUGH_WAKEDOCK  # asleep: woken by WakeDock
            _direct_soon(http, "app.localhost")
            assert _hop(http, "app.localhost") == DIRECT  # awake: straight from nginx
            # Traffic ends: the reaper's stop stores `stopping`, the edge drops the route, and
            # the container keeps running through the grace.
            wait_for(_routed(data, "app", routed=False), "the route dropped", 30)
            assert _state(data, "app") == "stopping"
            assert container("app").status == "running"
            assert len(_stops(data, "app")) == 1  # only the first stop so far
        # The edge stopped (nginx exited, its registration released): the waiting stop goes
        # ahead, long before its 60 s.
        wait_for(lambda: container("app").status == "exited", "the stop once the edge left", 30)
        wait_for(lambda: len(_stops(data, "app")) == 2, "the audited second stop", 10)
        assert "edge attached: none" in _status(data, env)
